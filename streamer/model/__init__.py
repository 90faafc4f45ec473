"""The learning side: River factorization machines read as inner products."""

from streamer.model.fast_fm import FastFMClassifier, FastFMRegressor
from streamer.model.recmodel import RecModel
from streamer.model.sampler import NegativeSampler

__all__ = ["FastFMClassifier", "FastFMRegressor", "NegativeSampler", "RecModel"]
