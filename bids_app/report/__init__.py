"""HTML reports for participants and groups."""
