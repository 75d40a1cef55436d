"""The Key2Mesh network: feature extractor, body-model head, domain critic; checkpoints."""

from key2mesh.model.network import (
    DomainCritic,
    FeatureExtractor,
    Key2MeshNet,
    ModelConfig,
    ParamHead,
)

__all__ = ["DomainCritic", "FeatureExtractor", "Key2MeshNet", "ModelConfig", "ParamHead"]
