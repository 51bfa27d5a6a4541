"""The segments stage: segmentations users define (rules) and the data reveals (clustering),
with quality, stability and history. See docs/segments.md."""
