#!/bin/sh
# What a drill must leave exactly as it found it on a host, or on the lab's
# box: iptables (iptables-save), then the network links, their routes and
# their queueing disciplines (lines "link ...", "route ...", "qdisc ...",
# sorted), and the sysctls a fleet or a fault may change ("sysctl ..."), so
# two snapshots compare line by line.
# $1: an extended regex of the link names to list (on the box: the fleet's
# own bridges and veths, "^(vb-)?hsit-"); none: every link (inside a
# machine). Links are listed by name and state only: a machine's veth gets a
# new index and address when the machine boots again.
set -u
iptables-save
pattern=${1:-.}
ip -o link show | awk -F': ' '{ sub(/@.*/, "", $2); print $2, ($3 ~ /[<,]UP[,>]/ ? "up" : "down") }' \
  | grep -E "$pattern" | sort | sed 's/^/link /'
ip route show | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1), $0 }' \
  | grep -E "$pattern" | cut -d' ' -f2- | sort | sed 's/^/route /'
tc qdisc show | awk '{ for (i = 1; i < NF; i++) if ($i == "dev") print $(i + 1), $0 }' \
  | grep -E "$pattern" | cut -d' ' -f2- | sort
sysctl net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables 2>/dev/null | sed 's/^/sysctl /'
exit 0
