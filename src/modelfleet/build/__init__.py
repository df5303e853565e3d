"""Container images: per model x version x environment, trainer images for pipelines."""

from __future__ import annotations

from modelfleet.build.baseimage import make_base_image
from modelfleet.build.context import (
    DEFAULT_BASE,
    IMAGE_MONITORING,
    BuildResult,
    build,
    containerfile,
    image_model,
    image_tag,
    plan_build,
    serve_yaml,
)
from modelfleet.build.engines import ImageEngine, ImageInfo, find_engine
from modelfleet.build.local import run_container
from modelfleet.build.pipeline_file import PipelineFile, imports_torch
from modelfleet.build.trainer import build_trainer, plan_trainer, trainer_containerfile

__all__ = [
    "DEFAULT_BASE",
    "IMAGE_MONITORING",
    "BuildResult",
    "ImageEngine",
    "ImageInfo",
    "PipelineFile",
    "build",
    "build_trainer",
    "containerfile",
    "find_engine",
    "image_model",
    "image_tag",
    "imports_torch",
    "make_base_image",
    "plan_build",
    "plan_trainer",
    "run_container",
    "serve_yaml",
    "trainer_containerfile",
]
