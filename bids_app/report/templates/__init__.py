"""Jinja2 templates of the HTML reports (package data; a package so wheels ship them)."""
