"""Integration packages: a manifest (``Integration``), a setup hook that receives a ``Host``, and the
registry that finds them (bundled folders and the ``threadline.integrations`` entry points).
See docs/integrations.md."""

from threadline.plugins.base import Integration, PluginError, PluginType
from threadline.plugins.host import Channel, Host, InboxFull, Published

__all__ = ["Channel", "Host", "InboxFull", "Integration", "PluginError", "PluginType", "Published"]
