"""Operators of the dotflow provider."""

from .dotflow import DotflowOperator

__all__ = ["DotflowOperator"]
