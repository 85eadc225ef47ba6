"""Programme impact: what deploying an AI in a given way does to a screening programme.

Replays each exam of the reference set through screening protocols using the recorded reads
and the AI's scores (:mod:`~harness.programme.protocols`), measures the programme at the
standard's population prevalence with bootstrap CIs (:mod:`~harness.programme.outcomes`), prices
it for a region's yearly volume (:mod:`~harness.programme.costs`) and shows how the answer moves
with every input (:mod:`~harness.programme.sensitivity`). :mod:`~harness.programme.analysis`
runs all of it and returns the JSON document ``mammocert programme`` writes.
"""
