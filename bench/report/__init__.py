"""Reports and figures, built from a results file only: the markdown report, its figures,
and the ratios it takes within one run."""
