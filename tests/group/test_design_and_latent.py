"""Design matrices from participants.tsv and the latent scale the group model works in."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from bids_app.errors import InputValidationError
from bids_app.group.design import build_design, parse_contrast
from bids_app.group.latent import Z975, latent_estimate, to_latent, to_natural
from bids_app.models import ONE_PARAM

TABLE = pd.DataFrame({
    "participant_id": ["sub-01", "sub-02", "sub-03", "sub-04"],
    "age": [20.0, 30.0, np.nan, 40.0],
    "sex": ["F", "M", "M", "F"],
})


def test_design_drops_participants_without_values():
    design = build_design("~ age + sex", ["01", "02", "03", "04", "05"], TABLE)
    assert design.columns == ["Intercept", "age", "sex[T.M]"]
    assert design.participants == ["01", "02", "04"]
    assert design.dropped == {"03": "no age in participants.tsv",
                              "05": "not listed in participants.tsv"}
    np.testing.assert_array_equal(design.matrix[:, 1], [20, 30, 40])
    assert design.labels()["sex[T.M]"] == "sexTM" and design.labels()["Intercept"] == "intercept"
    np.testing.assert_array_equal(parse_contrast("age=1,sex[T.M]=-1", design.columns), [0, 1, -1])
    np.testing.assert_array_equal(parse_contrast("0, 0, 1", design.columns), [0, 0, 1])
    with pytest.raises(InputValidationError, match="has 2 weights"):
        parse_contrast("0,1", design.columns)


def test_design_errors_name_the_problem():
    with pytest.raises(InputValidationError, match="no column weight"):
        build_design("~ age + weight", ["01", "02"], TABLE)
    with pytest.raises(InputValidationError, match="rank-deficient"):
        build_design("~ age + sex", ["01", "02"], TABLE)  # 2 participants, 3 columns
    intercept = build_design(None, ["01"])
    assert intercept.columns == ["Intercept"] and intercept.labels()["Intercept"] == "mean"


def test_latent_variance_from_interval_and_delta_method():
    theta = np.array([0.9, 1.2, 2.4])
    latent = to_latent("1p", "theta", theta)
    np.testing.assert_allclose(latent, ONE_PARAM.to_latent(theta[:, None])[:, 0])
    np.testing.assert_allclose(to_natural("1p", "theta", latent), theta)
    se_latent = np.array([0.1, 0.2, 0.05])
    lower = to_natural("1p", "theta", latent - Z975 * se_latent)
    upper = to_natural("1p", "theta", latent + Z975 * se_latent)
    _, var = latent_estimate("1p", "theta", theta, None, lower, upper)
    np.testing.assert_allclose(np.sqrt(var), se_latent, rtol=1e-9)  # exact from the bounds
    h = 1e-6
    slope = (to_natural("1p", "theta", latent + h) - to_natural("1p", "theta", latent - h)) / 2e-6
    _, var_delta = latent_estimate("1p", "theta", theta, slope * se_latent)
    np.testing.assert_allclose(np.sqrt(var_delta), se_latent, rtol=1e-5)
