"""What a machine has and how fast it is: the detected or simulated profile (`profile`), the
datasheet table of well-known GPUs (`gpu_specs`), a container's memory limit (`cgroup`) and the
measured bandwidth and matmul throughput of a device (`microbench`)."""
