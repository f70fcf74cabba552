"""Child processes: execute.py is the one place a program is started; sandbox.py confines probe processes
(bubblewrap) under the syscall filter of seccomp.py, in a drill's cgroup (cgroups.py); procs.py reads /proc."""
