"""Report stage (rules/report.smk): figures, plotting helpers and the written findings."""
