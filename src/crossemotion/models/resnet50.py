"""``resnet50``: a torchvision ResNet (``arch``, default resnet50) on face crops.

The classifier is replaced by dropout + a linear layer over the task's
classes. On IFEED an item is an image; on MELD the model still trains on face
crops (labelled with their utterance's emotion or sentiment) and the runner
averages the face probabilities of each utterance (``aggregate_by_key``).
Config: ``arch``, ``weights``, ``size``,
``augment`` (flip + shift), ``dropout``, ``dev_fraction`` (IFEED's dev split
carved from Training, see crossemotion.datasets.shards.stratified_group_split).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from torch import Tensor, nn
from torch.utils.data import Dataset

from crossemotion.datasets.collate import stack_collate
from crossemotion.datasets.faces import face_datasets, face_datasets_from_tables
from crossemotion.model_config import FaceConfig
from crossemotion.models.backbones import feature_extractor, pretrained_fallback
from crossemotion.models.registry import ModelSpec, ShardInputs, register
from crossemotion.models.vision import preprocess_images


@dataclass(frozen=True, kw_only=True)
class ResNet50Config(FaceConfig):
    # any torchvision ResNet-style classifier
    arch: str = "resnet50"
    dropout: float = 0.2


class FaceClassifier(nn.Module):
    def __init__(self, cfg: ResNet50Config, num_classes: int) -> None:
        super().__init__()
        self.backbone, width = feature_extractor(cfg.arch, cfg.weights, pretrained_fallback(cfg))
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.fc(self.dropout(self.backbone(batch["image"])))


def make_datasets(cfg: ResNet50Config, dataset: str, shards: ShardInputs) -> dict[str, Dataset]:
    if not shards.faces.get("train") or not shards.faces.get("test"):
        raise ValueError(f"resnet50 on {dataset!r} needs train and test faces shards")
    # the text shards label MELD faces with their utterance's sentiment (task: sentiment)
    return dict(face_datasets(cfg, shards.faces, seed=cfg.seed, text=shards.text))


SPEC = register(
    ModelSpec(
        name="resnet50",
        config=ResNet50Config,
        build=FaceClassifier,
        make_datasets=make_datasets,
        datasets_from_tables=face_datasets_from_tables,
        collate=stack_collate,
        aggregate_by_key=True,
        preprocess=preprocess_images,
    )
)
