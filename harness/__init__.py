"""mammocert harness: cases, vendor adapters, runner, perturbations, statistics, CLI, pytest plugin."""

__version__ = "0.1.0"
