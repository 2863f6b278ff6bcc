"""Plugin package for identity schemes and signature profiles (a ``twisted.plugin`` package).

Third parties ship a module in their own ``ntpauto/plugins/`` directory; extending
``__path__`` makes ``getPlugins(..., ntpauto.plugins)`` find it next to the built-ins.
See ``docs/howto/identity-plugins.md``.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
