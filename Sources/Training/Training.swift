// Training: filled in by its issue.
