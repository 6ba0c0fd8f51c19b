#!/usr/bin/env bash
# GRPO with DeepSpeed ZeRO-3 on one or more nodes, launched by torchrun (no other launcher is needed).
#
# Run the same command on every node, changing only NODE_RANK:
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=node0.example MASTER_PORT=29500 GPUS_PER_NODE=4 scripts/torchrun_example.sh experiment=medqa_usmle
#   NNODES=2 NODE_RANK=1 MASTER_ADDR=node0.example MASTER_PORT=29500 GPUS_PER_NODE=4 scripts/torchrun_example.sh experiment=medqa_usmle
#
# Environment variables:
#   NNODES         nodes in the job (default 1); becomes trainer.num_nodes
#   NODE_RANK      this node's index, 0 .. NNODES-1 (default 0)
#   GPUS_PER_NODE  processes per node, one per GPU (default 1); becomes trainer.devices
#   MASTER_ADDR    address of node 0, reachable from every node (default 127.0.0.1)
#   MASTER_PORT    a free TCP port on node 0 for the rendezvous (default 29500)
#   STRATEGY       deepspeed_stage3 (default) or deepspeed_stage3_offload
#   ACCELERATOR    gpu (default) or cpu (CPU runs use gloo and need DS_ACCELERATOR=cpu, set below)
#   NCCL_SOCKET_IFNAME / GLOO_SOCKET_IFNAME   the network interface between nodes, if auto-detection picks a wrong one
# The run directory (run_dir=...) must be on a filesystem all nodes share: rank 0 publishes the sharded checkpoint
# that every rank writes into, and resume=auto reads it back on every node.
# Stopping: SIGTERM/SIGINT to any *worker* makes every rank finish its step, save the same step and exit 128+signal.
# A SIGTERM to torchrun itself is forwarded to the workers, but torchrun kills them 30 s later, so a step plus
# save longer than that is lost (the last periodic checkpoint remains); on SLURM use scripts/slurm_grpo.sbatch.
set -euo pipefail
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
GPUS_PER_NODE=${GPUS_PER_NODE:-1}
MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
MASTER_PORT=${MASTER_PORT:-29500}
STRATEGY=${STRATEGY:-deepspeed_stage3}
ACCELERATOR=${ACCELERATOR:-gpu}
if [ "$ACCELERATOR" = cpu ]; then export DS_ACCELERATOR=cpu OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}; fi
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

exec python -m torch.distributed.run \
    --nnodes="$NNODES" --nproc-per-node="$GPUS_PER_NODE" --node-rank="$NODE_RANK" \
    --rdzv-backend=c10d --rdzv-endpoint="$MASTER_ADDR:$MASTER_PORT" --rdzv-id="${RDZV_ID:-medzero}" \
    -m medzero_pl.fit \
    trainer.strategy="$STRATEGY" trainer.accelerator="$ACCELERATOR" \
    trainer.num_nodes="$NNODES" trainer.devices="$GPUS_PER_NODE" \
    "$@"
