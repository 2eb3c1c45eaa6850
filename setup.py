"""Packaging beside pyproject.toml: the repository's top-level `catalogs/` and `examples/` stay the
source of truth and are installed as the package data `sizer._catalogs` and `sizer._examples`
(a package-dir mapping: no copies in the tree, the same for a wheel, `pip install .` and `-e .`)."""

from setuptools import find_packages, setup

SHIPPED = {"sizer._catalogs": "catalogs", "sizer._examples": "examples"}

setup(
    packages=find_packages(include=["sizer", "sizer.*"]) + list(SHIPPED),
    package_dir=SHIPPED,
)
