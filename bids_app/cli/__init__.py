"""Command-line entry points: hemocoupling, hemocoupling-simulate, hemocoupling-train."""
