"""Container images per model x version x environment: contexts, engines, SBOM, local runs."""

from __future__ import annotations

from modelfleet.build.context import BuildResult, build, containerfile, image_tag, plan_build
from modelfleet.build.engines import ImageEngine, ImageInfo, find_engine

__all__ = [
    "BuildResult",
    "ImageEngine",
    "ImageInfo",
    "build",
    "containerfile",
    "find_engine",
    "image_tag",
    "plan_build",
]
