"""Container images per model x version x environment: contexts, engines, SBOM, local runs."""

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

__all__ = [
    "DEFAULT_BASE",
    "IMAGE_MONITORING",
    "BuildResult",
    "ImageEngine",
    "ImageInfo",
    "build",
    "containerfile",
    "find_engine",
    "image_model",
    "image_tag",
    "make_base_image",
    "plan_build",
    "run_container",
    "serve_yaml",
]
