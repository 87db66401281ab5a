"""ZeroMQ client for the Keyface backend, shared by the Blender add-on, the CLI, the demo and the tests.

stdlib + numpy + pyzmq only (it is vendored into the add-on). Kept out of `shared_proto`, which holds
no socket code.
"""

from .client import BackendUnavailable, Client, Job, JobFailed, RequestFailed, new_request_id

__all__ = ["BackendUnavailable", "Client", "Job", "JobFailed", "RequestFailed", "new_request_id"]
