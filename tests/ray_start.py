"""``ray start`` with two changes for many nodes on one loaded machine (used by ``ray_nodes.py``).

- The node's own address is 127.0.0.1: Ray replaces a ``--node-ip-address`` of 127.0.0.1 by the
  address it would use to reach the internet (and refuses worker nodes when told it is a
  one-machine cluster), so without this the nodes would talk over the LAN address.
- A node waits up to 3 minutes for its raylet to register with the GCS, not Ray's fixed 30 s,
  which a 2-core machine running several nodes and builds exceeds.
"""
import sys
import time

import ray._private.services as services

services.node_ip_address_from_perspective = lambda address=None: "127.0.0.1"
_get_node = services.get_node


def _get_node_patiently(*args, **kwargs):
    deadline = time.monotonic() + 180
    while True:
        try:
            return _get_node(*args, **kwargs)
        except RuntimeError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


services.get_node = _get_node_patiently

from ray.scripts.scripts import main  # noqa: E402

sys.argv[0] = "ray"
sys.exit(main())
