"""``ray start`` for a second node of a loopback test cluster: ``python tests/scale/ray_node.py
start --address 127.0.0.1:P --node-ip-address 127.0.0.1 ...``.

Ray 2.58 on Linux has two switches for one thing. With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``
(what keeps a node on 127.0.0.1, see ``neuron_signatures.scale.cluster``) ``ray start
--address`` refuses to add a node ("multi-node clusters are not supported"); with it on, Ray
rewrites 127.0.0.1 (the head's address and the node's own) into the machine's network address,
where the loopback head does not listen and the new node's ports would face the network. So this
runs Ray's own ``ray start`` with the switch on and that one rewrite off: every address stays
127.0.0.1, and the tests assert that every port listens there.
"""

from __future__ import annotations

import sys

import ray._private.services as services
from ray.scripts.scripts import main


def keep_loopback(host: str) -> str:
    return host


if __name__ == "__main__":
    services.resolve_ip_for_localhost = keep_loopback
    sys.argv = ["ray", *sys.argv[1:]]
    main()
