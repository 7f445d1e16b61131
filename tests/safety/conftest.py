"""Fixtures for the safety tests: the toxicity model is loaded once per session (about a second)."""

from __future__ import annotations

import importlib.util

import pytest

from aimi.safety import ClassifierFilter, SafetyPolicy, SafetyService, ToxicityModel, offline_filters


@pytest.fixture(scope="session")
def toxicity_model() -> ToxicityModel:
    if importlib.util.find_spec("toxic_classifier") is None or importlib.util.find_spec("h5py") is None:
        pytest.skip("toxic-comment-classifier (installed with --no-deps) and h5py are needed")
    return ToxicityModel.load()


@pytest.fixture(scope="session")
def classifier(toxicity_model: ToxicityModel) -> ClassifierFilter:
    return ClassifierFilter(toxicity_model)


@pytest.fixture
def service(classifier: ClassifierFilter) -> SafetyService:
    inputs, outputs = offline_filters(classifier)
    return SafetyService(SafetyPolicy(), input_filters=inputs, output_filters=outputs)
