"""Stage 5, what a scientist looks at: the generic sweep report (sweep_report), faceted figures (figures),
report.html (page), provenance (provenance)."""
