"""Hooks of the dotflow provider."""

from .dotflow import DotflowHook

__all__ = ["DotflowHook"]
