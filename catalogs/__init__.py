"""sizer's shipped model catalog: one TOML family file per family, generated from cards.toml and
the config.json copies in configs/ (`python -m sizer.core.catalog.build`). Installed as the
package data `sizer._catalogs`; read it through `sizer.core.paths.shipped_catalogs()`."""
