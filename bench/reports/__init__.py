"""Reports: one module per kind (leaderboard tables, plots)."""
