"""featurekit-vicreg: the VICReg method as a featurekit plugin.

Installing this package makes ``vicreg`` appear in ``featurekit plugins`` and
``featurekit.create("vicreg")``, through the entry point declared in its
``pyproject.toml``::

    [project.entry-points."featurekit.plugins"]
    vicreg = "featurekit_vicreg"
"""

from __future__ import annotations

import featurekit
from featurekit_vicreg.loss import vicreg_loss
from featurekit_vicreg.vicreg import VICReg

__version__ = "0.1.0"

#: The featurekit plugin API this plugin is written for; featurekit warns on a mismatch.
FEATUREKIT_API_VERSION = 1

__all__ = ["VICReg", "vicreg_loss"]


@featurekit.hookimpl
def featurekit_register_methods(registry) -> None:
    registry.add_method(VICReg)
