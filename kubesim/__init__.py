"""kubesim: a Kubernetes API server and controller-manager simulator, served over real HTTP.

The official Kubernetes client and kopf talk to it unchanged. It exists because promote's correctness
depends on apiserver and controller behaviour (garbage collection, adoption, optimistic concurrency)
and no real cluster can run where this project is developed and tested.
"""

from kubesim.cluster import SimulatedCluster, SimulatorThread
from kubesim.store import Store

__all__ = ["SimulatedCluster", "SimulatorThread", "Store"]
