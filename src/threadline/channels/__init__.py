"""Channel adapters: one package per kind, behind channels.base.ChannelAdapter."""
