"""The settings of one quantization run, typed and validated (recorded in OUT/config.json)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt


class QuantConfig(BaseModel):
    """Settings of one quantization run (recorded in result.json)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bits: tuple[int, ...] = Field((2, 3, 4, 5, 6, 7, 8), description="allowed weight bit widths")
    crossbars: PositiveInt | None = Field(None, description="crossbar budget (None: the chip's; pools: their counts)")
    agent: Literal["ddpg", "evolution"] = "ddpg"
    episodes: PositiveInt = Field(300, description="episodes of the whole search (split over the stages)")
    stages: Literal["layer", "group", "both"] = "both"
    stage1_share: float = Field(0.5, gt=0, lt=1, description="share of the episodes stage 1 gets with stages=both")
    utilization_weight: float = Field(
        0.5, ge=0,
        description=(
            "reward per unit of utilization (0: array-unaware); at 0.5 one point of utilization is worth half a"
            " point of validation accuracy (at 0.1 it was below the noise of a 2000-image validation subset)"
        ),
    )
    refine_steps: int = Field(2, ge=0, description="stage 2: widths a group may move from its layer's")
    max_groups: PositiveInt = Field(4, description="stage 2 decisions per layer at most")
    val_images: PositiveInt = Field(2000, description="validation images that score a policy")
    calibration: PositiveInt = Field(256, description="validation images that calibrate activation ranges")
    finetune_epochs: int = Field(1, ge=0, description="quantization-aware fine-tuning epochs of the final policy")
    finetune_lr: float = Field(0.01, gt=0)
    seed: int = 0

    def stage_episodes(self) -> tuple[int, int]:
        if self.stages == "layer":
            return self.episodes, 0
        if self.stages == "group":
            return 0, self.episodes
        first = max(1, round(self.episodes * self.stage1_share))
        return first, max(1, self.episodes - first)
