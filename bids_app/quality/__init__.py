"""Stage after inference: does the fitted model describe the run? (the quality gate)."""

from bids_app.quality.gate import QualityControl, quality_control

__all__ = ["QualityControl", "quality_control"]
