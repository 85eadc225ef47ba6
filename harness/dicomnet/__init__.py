"""DICOM networking for vendor AI nodes: Storage SCU/SCP, PACS query/retrieve, de-identification,
and the Mammography CAD SR (TID 4000) / TID 1500 writer and parser.

Modules are named after what they hold: :mod:`~harness.dicomnet.scu` (sending studies),
:mod:`~harness.dicomnet.scp` (receiving result objects), :mod:`~harness.dicomnet.pacs`
(finding and retrieving results from a PACS), :mod:`~harness.dicomnet.deid` (UID
re-randomisation and the de-identification gate), :mod:`~harness.dicomnet.sr` (results as
structured reports).
"""
