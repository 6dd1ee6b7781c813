"""Optional accelerated kernels. Never import these directly: ``facenerf.core.backends``
imports them on request, so that importing facenerf never imports an accelerator."""
