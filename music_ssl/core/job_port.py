"""The rendezvous port of a Slurm job: ``${job_port:29671}`` in the Slurm run configs
(``distributed_training.distributed_port``).

fairseq's Slurm rendezvous (``distributed_utils._infer_slurm_init``) has every task of a job meet at
``tcp://<first node of the job>:distributed_port``, where rank 0 binds the port for the whole run. With one fixed
port, two multi-task jobs whose first node is the same machine collide: the second one's rank 0 cannot bind
("address already in use") and the job fails. That is what 1-, 2- and 4-GPU jobs do on 8-GPU nodes (an ablation
sweep). The port is derived from the job id instead: ``20000 + SLURM_JOB_ID mod 10000``, below Linux's ephemeral
ports (32768 and up), the same in every task of a job and in its requeued runs (the id is kept), different for any
two jobs whose ids differ by less than 10,000. Outside a Slurm job, the fallback given.

The resolver is registered on ``import music_ssl``; in a Slurm job the plugin is imported (by the configs' hydra
callback) before fairseq resolves the config, so the id is the job's own.
"""
import os

from omegaconf import OmegaConf

PORT_BASE, PORT_SPAN = 20000, 10000
RESOLVER = "job_port"


def job_port(fallback: int = 29671) -> int:
    """``PORT_BASE + SLURM_JOB_ID mod PORT_SPAN`` inside a Slurm job, else ``fallback``."""
    job = os.environ.get("SLURM_JOB_ID", "")
    return PORT_BASE + int(job) % PORT_SPAN if job.isdigit() else int(fallback)


def register_resolver() -> None:
    """Make ``${job_port:FALLBACK}`` resolvable in OmegaConf configs (once per process)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, job_port)
