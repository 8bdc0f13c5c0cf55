#!/bin/sh
# One member of the three-member etcd 3.4 cluster the replicas share (Debian 12: apt-get install
# etcd-server). Run on each of 10.0.0.1, .2, .3 with its name: ./etcd-member.sh e1 10.0.0.1
# Production timings (etcd's defaults); lastgood's own: lease 15s, renew_deadline 10s, retry 2s.
set -eu
name=$1 ip=$2
exec etcd --name "$name" --data-dir "/var/lib/etcd/$name" \
  --listen-client-urls "http://$ip:2379" --advertise-client-urls "http://$ip:2379" \
  --listen-peer-urls "http://$ip:2380" --initial-advertise-peer-urls "http://$ip:2380" \
  --initial-cluster "e1=http://10.0.0.1:2380,e2=http://10.0.0.2:2380,e3=http://10.0.0.3:2380" \
  --initial-cluster-token lastgood-prod --initial-cluster-state new
