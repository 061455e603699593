// Package deploy holds the tests of the ways infonce is launched outside
// `go run`: the container image and docker-compose.yml at the root of the
// repository, the Slurm batch script (slurm/infonce.sbatch), the
// Kubernetes manifests (k8s/) and the ssh launcher (ssh/launch.sh).
//
// The package itself only reads run directories: [ReadLosses] turns a
// metrics.jsonl into the loss of every step (a step logged again after a
// recovery replaces the earlier line), and [CompareLosses] finds the
// largest relative difference between two runs. The tests start real
// processes (Docker containers, slurmctld and slurmd, shell scripts) and
// skip, saying why, when the tool they need is missing.
package deploy
