#!/bin/sh
# crictl, as a shim onto containerd's ctr (kha bundle). Debian 12 has no cri-tools package, and kubeadm
# 1.20 shells out to crictl for a CRI socket. These are all the calls it makes
# (cmd/kubeadm/app/util/runtime/runtime.go at v1.20.2):
#
#   crictl -r ENDPOINT info             IsRunning: preflight, "is the runtime up"
#   crictl -r ENDPOINT inspecti IMAGE   ImageExists: preflight image checks (exit code only)
#   crictl -r ENDPOINT pull IMAGE       PullImage: only for images inspecti did not find
#   crictl -r ENDPOINT pods -q          ListKubeContainers: kubeadm reset
#   crictl -r ENDPOINT stopp POD        RemoveContainers: kubeadm reset
#   crictl -r ENDPOINT rmp POD          RemoveContainers: kubeadm reset
#
# plus, for people on a node: ps [-a] [-q], images [-q], rmi, version. Anything else fails loudly.
# Pods and containers are the CRI plugin's, found in containerd's k8s.io namespace by the labels it sets
# (io.cri-containerd.kind = sandbox | container, io.kubernetes.pod.uid). stopp/rmp go around the CRI
# plugin: they kill and delete the containerd tasks and containers, but do not tear down the pod's
# network (no CNI DEL); `kubeadm reset` says to clean CNI state by hand anyway.
set -eu

NS=k8s.io
CTR=${CRICTL_SHIM_CTR:-ctr}
DEFAULT_ENDPOINT=unix:///run/containerd/containerd.sock

die() {
	echo "crictl (kha shim onto ctr): $*" >&2
	exit 1
}

usage() {
	cat <<USAGE
crictl (kha shim onto ctr) [-r|--runtime-endpoint ENDPOINT] COMMAND [ARGS]
commands: info, version, inspecti IMAGE, pull IMAGE, images [-q], rmi IMAGE,
          pods [-q], ps [-a] [-q], stopp POD..., rmp POD...
USAGE
}

endpoint=""
config=${CRI_CONFIG_FILE:-/etc/crictl.yaml}
while [ $# -gt 0 ]; do
	case $1 in
	-r | --runtime-endpoint)
		[ $# -ge 2 ] || die "$1 needs a value"
		endpoint=$2
		shift 2
		;;
	--runtime-endpoint=* | -r=*)
		endpoint=${1#*=}
		shift
		;;
	-c | --config)
		[ $# -ge 2 ] || die "$1 needs a value"
		config=$2
		shift 2
		;;
	--config=*)
		config=${1#*=}
		shift
		;;
	-i | --image-endpoint | -t | --timeout)
		# One containerd socket serves images and runtime; ctr has no per-call timeout.
		[ $# -ge 2 ] || die "$1 needs a value"
		shift 2
		;;
	--image-endpoint=* | --timeout=* | -D | --debug)
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	--)
		shift
		break
		;;
	-*) die "unsupported option $1" ;;
	*) break ;;
	esac
done
[ $# -gt 0 ] || {
	usage >&2
	exit 1
}

if [ -z "$endpoint" ]; then
	endpoint=${CONTAINER_RUNTIME_ENDPOINT:-}
fi
if [ -z "$endpoint" ] && [ -r "$config" ]; then
	endpoint=$(sed -n 's/^runtime-endpoint:[[:space:]]*//p' "$config" | head -n 1 | tr -d "\"'")
fi
endpoint=${endpoint:-$DEFAULT_ENDPOINT}
case $endpoint in
unix://*) address=${endpoint#unix://} ;;
/*) address=$endpoint ;;
*) die "endpoint $endpoint: only unix sockets are supported" ;;
esac

_ctr() {
	command "$CTR" --address "$address" --namespace "$NS" "$@"
}

# docker.io normalisation, as crictl does it (distribution/reference ParseNormalizedNamed): "pause" is
# docker.io/library/pause:latest; a first component with a dot, a colon or "localhost" is a registry.
normalize() {
	ref=$1
	case $ref in
	sha256:*)
		echo "$ref"
		return
		;;
	esac
	first=${ref%%/*}
	if [ "$first" = "$ref" ]; then
		ref=docker.io/library/$ref
	else
		case $first in
		*.* | *:* | localhost) ;;
		*) ref=docker.io/$ref ;;
		esac
	fi
	case $ref in
	*@*) ;;
	*)
		last=${ref##*/}
		case $last in
		*:*) ;;
		*) ref=$ref:latest ;;
		esac
		;;
	esac
	echo "$ref"
}

image_present() {
	[ -n "$(_ctr images list -q "name==$1")" ]
}

quiet_flag() {
	quiet=0
	all=0
	for a in "$@"; do
		case $a in
		-q | --quiet) quiet=1 ;;
		-a | --all) all=1 ;;
		-qa | -aq)
			quiet=1
			all=1
			;;
		*) die "$cmd: unsupported argument $a" ;;
		esac
	done
}

pod_members() {
	# The sandbox itself and every container of its pod (same io.kubernetes.pod.uid label).
	uid=$(_ctr containers info "$1" | sed -n 's/^[[:space:]]*"io.kubernetes.pod.uid":[[:space:]]*"\([^"]*\)".*/\1/p' | head -n 1)
	[ -n "$uid" ] || die "$1: not a pod sandbox (no io.kubernetes.pod.uid label)"
	_ctr containers list -q "labels.\"io.kubernetes.pod.uid\"==$uid"
}

task_status() {
	_ctr tasks list | awk -v id="$1" 'NR > 1 && $1 == id { print $3 }'
}

stop_task() {
	# SIGKILL the container's init process (the kernel then ends its PID namespace), wait (up to 20 s) for
	# the task to stop, delete it. Neither `tasks kill --all` nor `tasks delete --force` (which kills with
	# --all): runc's kill --all walks the container's cgroup, and inside an LXC node that never returned
	# (kubeadm reset hung there). A container without a task is already stopped.
	_ctr tasks kill --signal SIGKILL "$1" >/dev/null 2>&1 || true
	waited=0
	while [ "$waited" -lt 20 ] && [ "$(task_status "$1")" = RUNNING ]; do
		sleep 1
		waited=$((waited + 1))
	done
	_ctr tasks delete "$1" >/dev/null 2>&1 || true
}

pod_members_last_first() {
	# The pod's containers before its sandbox (as crictl's StopPodSandbox stops them).
	order=""
	for c in $(pod_members "$1"); do
		order="$c $order"
	done
	echo "$order"
}

cmd=$1
shift
case $cmd in
info)
	[ $# -eq 0 ] || die "info: unexpected arguments $*"
	_ctr version >/dev/null
	printf '%s\n' '{"status": {"conditions": [{"type": "RuntimeReady", "status": true}]}, "shim": "kha: containerd answered ctr version; network readiness is not reported"}'
	;;
version)
	server=$(_ctr version | sed -n '/^Server:/,$ s/^[[:space:]]*Version:[[:space:]]*//p' | head -n 1)
	printf 'Version:  0.1.0\nRuntimeName:  containerd\nRuntimeVersion:  %s\nRuntimeApiVersion:  v1alpha2\n' "$server"
	;;
inspecti)
	[ $# -eq 1 ] || die "inspecti: exactly one IMAGE"
	ref=$(normalize "$1")
	image_present "$ref" || die "no such image \"$ref\" present"
	printf '{"status": {"repoTags": ["%s"]}}\n' "$ref"
	;;
pull)
	[ $# -eq 1 ] || die "pull: exactly one IMAGE"
	ref=$(normalize "$1")
	if ! image_present "$ref"; then
		_ctr images pull "$ref" >&2
	fi
	echo "Image is up to date for $ref"
	;;
images)
	quiet_flag "$@"
	[ "$quiet" = 1 ] || echo "IMAGE"
	_ctr images list -q | grep -v '^sha256:' || true
	;;
rmi)
	[ $# -ge 1 ] || die "rmi: IMAGE..."
	for i in "$@"; do
		_ctr images remove "$(normalize "$i")"
	done
	;;
pods)
	quiet_flag "$@"
	[ "$quiet" = 1 ] || echo "POD ID"
	_ctr containers list -q 'labels."io.cri-containerd.kind"==sandbox'
	;;
ps)
	quiet_flag "$@"
	[ "$quiet" = 1 ] || echo "CONTAINER"
	if [ "$all" = 1 ]; then
		_ctr containers list -q 'labels."io.cri-containerd.kind"==container'
	else
		running=$(_ctr tasks list | awk 'NR > 1 && $3 == "RUNNING" { print $1 }')
		for c in $(_ctr containers list -q 'labels."io.cri-containerd.kind"==container'); do
			for r in $running; do
				if [ "$c" = "$r" ]; then
					echo "$c"
				fi
			done
		done
	fi
	;;
stopp)
	[ $# -ge 1 ] || die "stopp: POD..."
	for pod in "$@"; do
		for c in $(pod_members_last_first "$pod"); do
			stop_task "$c"
		done
		echo "Stopped sandbox $pod"
	done
	;;
rmp)
	[ $# -ge 1 ] || die "rmp: POD..."
	for pod in "$@"; do
		for c in $(pod_members_last_first "$pod"); do
			stop_task "$c"
			_ctr containers delete "$c"
		done
		echo "Removed sandbox $pod"
	done
	;;
help) usage ;;
*) die "$cmd: not supported (kubeadm 1.20 needs only info, inspecti, pull, pods, stopp, rmp)" ;;
esac
exit 0
