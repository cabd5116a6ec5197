"""Bash scripts that install, remove and check one peer's wg-quick config on its host, over SSH.

pulumi-command's ``remote.Command`` runs each script as ``<login shell> -c <script>`` with the peer's config on
stdin (the ``stdin`` input, a secret). So every script here is a self-contained bash command string that:

* becomes root first (``sudo -n``) when the SSH user is not root, passing stdin through untouched;
* keeps every secret off command lines and out of output: the config is read from stdin into a 0600 file in a
  0700 directory, tools get file paths, and error text from ``wg`` is passed through a redaction filter (``wg``
  quotes the offending value, which can be a key);
* prints at most one short, non-secret line on stdout (the Pulumi output) and everything else on stderr.

Updates are hitless: when the interface is up, ``install_script`` validates the new config in a scratch network
namespace, then applies it like ``wg syncconf`` (in parts: see step 4b) plus address, MTU, route and hook reconciliation instead of a
``wg-quick down/up`` that would drop every tunnel of the mesh for an unrelated peer's change.

The script texts appear verbatim in ``pulumi preview`` diffs, so they stay commented and free of generated noise;
values are inserted shell-quoted in one place (:func:`_fill`).
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
import shlex
from collections.abc import Mapping, Sequence

DEFAULT_CONF_DIR = "/etc/wireguard"
# The interface-name rule of wg-quick (and of Linux: at most 15 bytes).
INTERFACE_NAME = re.compile(r"^[a-zA-Z0-9_=+.-]{1,15}$")

# Every script starts here. pulumi-command logs in as the SSH user (often "ubuntu"); re-running the very same
# command string under passwordless sudo keeps stdin (the config) flowing to the root copy. BASH_EXECUTION_STRING
# is the text given to `bash -c`: the script itself, which holds no secret.
_PRELUDE = """\
set -euo pipefail
export LC_ALL=C
if [[ $(id -u) -ne 0 ]]; then
  if [[ -z ${BASH_EXECUTION_STRING:-} ]] || ! command -v sudo >/dev/null; then
    echo "wgmesh: must run as root, or as a user with passwordless sudo (run as: bash -c <script>)" >&2
    exit 1
  fi
  exec sudo -n -- "${BASH:-/bin/bash}" --noprofile --norc -c "$BASH_EXECUTION_STRING"
fi
"""

# Helpers shared by install and uninstall.
_HELPERS = r"""
say() { echo "wgmesh: $*" >&2; }
die() { say "$*"; exit 1; }
# wg and wg-quick quote the value they choke on; it can be (part of) a key. Anything key-like becomes <redacted>.
redact() { sed -E 's#[A-Za-z0-9+/]{20,}={0,2}#<redacted>#g' >&2; }
systemd_unit() { [[ -d /run/systemd/system && $conf_dir == /etc/wireguard ]]; }
reject() { say "rejected: $*"; die "nothing changed: $conf and $iface are as they were"; }
"""

# wg-quick's own reading of the [Interface] keys it handles itself (same splitting, same case-insensitivity), so
# the reconciliation below sees exactly what `wg-quick up` would apply.
_PARSE_SETTINGS = r"""
parse_settings() {
  local line stripped key value in_interface=0
  ADDRESSES=() MTU="" TABLE="" DNS="" POST_UP=() POST_DOWN=()
  shopt -s extglob nocasematch
  while read -r line || [[ -n $line ]]; do
    stripped="${line%%\#*}"
    key="${stripped%%=*}"; key="${key##*([[:space:]])}"; key="${key%%*([[:space:]])}"
    value="${stripped#*=}"; value="${value##*([[:space:]])}"; value="${value%%*([[:space:]])}"
    [[ $key == "["* ]] && in_interface=0
    [[ $key == "[Interface]" ]] && in_interface=1
    [[ $in_interface -eq 1 ]] || continue
    # shellcheck disable=SC2206
    case "$key" in
      Address) ADDRESSES+=( ${value//,/ } ) ;; # split as wg-quick does
      MTU) MTU="$value" ;;
      Table) TABLE="$value" ;;
      DNS) DNS="$value" ;;
      PostUp) POST_UP+=( "$value" ) ;;
      PostDown) POST_DOWN+=( "$value" ) ;;
    esac
  done < "$1"
  shopt -u nocasematch
}
"""

# Runs inside `unshare --net`: a new, empty network namespace that vanishes with this process, so nothing here can
# touch the live interface. A scratch WireGuard device (kernel, else wireguard-go like wg-quick falls back to) gets
# the real `wg setconf` parser and the real `ip` checks of every Address, the MTU and the routing table.
_SCRATCH_CHECK = r"""
check_in_scratch_netns() {
  local stripped=$1 name=$2 mtu=$3 table=$4 address pid=""
  shift 4
  if ! ip link add "$name" type wireguard 2>/dev/null; then
    "${WG_QUICK_USERSPACE_IMPLEMENTATION:-wireguard-go}" -f "$name" >/dev/null 2>&1 &
    pid=$!
    # On exit (values expanded now: they are locals), stop it and remove the control socket it leaves behind.
    # shellcheck disable=SC2064
    trap "kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f /var/run/wireguard/$name.sock" EXIT
    for _ in {1..250}; do
      [[ -S /var/run/wireguard/$name.sock ]] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.02
    done
  fi
  if ! wg show "$name" >/dev/null 2>&1; then
    echo "wgmesh: cannot create a scratch WireGuard device to validate the config with" >&2
    return 1
  fi
  if ! wg setconf "$name" "$stripped" 2>&1 | redact; then
    echo "wgmesh: wg cannot load the WireGuard part of the config" >&2
    return 1
  fi
  for address in "$@"; do
    if ! ip address add "$address" dev "$name" 2>&1 | redact; then
      echo "wgmesh: Address = $address is not a usable address" >&2
      return 1
    fi
  done
  if [[ -n $mtu ]] && ! ip link set mtu "$mtu" dev "$name" 2>&1 | redact; then
    echo "wgmesh: MTU = $mtu is not usable" >&2
    return 1
  fi
  if [[ -n $table && ${table,,} != auto && ${table,,} != off ]] && ! ip route add blackhole 192.0.2.0/24 table "$table" 2>&1 | redact; then
    echo "wgmesh: Table = $table is not a routing table" >&2
    return 1
  fi
  return 0
}
"""

_INSTALL = r"""
# 1. Read the config from stdin, first thing, into a private directory next to the target: same filesystem, so
#    the final mv is atomic; umask 077 makes every file 0600 from its creation. Leftovers of a killed run go.
umask 077
for tool in wg wg-quick ip unshare; do command -v "$tool" >/dev/null || die "$tool is not installed"; done
# shellcheck disable=SC2174 # 0700 is for conf_dir itself
mkdir -p -m 0700 "$conf_dir"
find "$conf_dir" -maxdepth 1 -name '.wgmesh-install.*' -mmin +60 -exec rm -rf -- {} + 2>/dev/null || true
work=$(mktemp -d "$conf_dir/.wgmesh-install.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
new="$work/$iface.conf"
cat > "$new"
[[ -s $new ]] || reject "no config on stdin"

# 2. Validate completely before touching anything: wg-quick's own parser (named <iface>.conf as wg-quick wants),
#    bash syntax of the hooks, then the scratch namespace check. Any failure leaves the old file and interface as
#    they are.
if ! wg-quick strip "$new" > "$work/stripped" 2> "$work/strip.err"; then
  redact < "$work/strip.err"
  reject "wg-quick cannot parse the config"
fi
parse_settings "$new"
for hook in "${POST_UP[@]}" "${POST_DOWN[@]}"; do
  printf '%s\n' "$hook" | bash -n 2>/dev/null || reject "hook is not valid bash: $hook"
done
#    wgmesh's own check hooks (": wgmesh-check; ..."): they change nothing, so they run now, before anything
#    changes: an interface the config names that this host lacks is refused here.
for hook in "${POST_UP[@]}"; do
  [[ $hook == ": wgmesh-check;"* ]] || continue
  if ! problem=$(bash --noprofile --norc -c "${hook//%i/$iface}" 2>&1); then
    reject "${problem:-a check of the config failed: $hook}"
  fi
done
if [[ -n $DNS ]] && ! command -v resolvconf >/dev/null; then
  reject "DNS = $DNS needs resolvconf, which is not installed"
fi
if ! unshare --net -- bash -c "set -o pipefail; $(declare -f redact check_in_scratch_netns); check_in_scratch_netns \"\$@\"" \
    check "$work/stripped" "wgmchk$$" "$MTU" "$TABLE" "${ADDRESSES[@]}"; then
  reject "the config does not load (see above)"
fi

# 3. Install the file: an atomic rename, 0600, only when the content changed (an unchanged file keeps its
#    mtime). The previous file is kept aside until the config is applied, and put back if applying fails.
old_post_down=() old_dns="" old_table=""
changed=1
if [[ -f $conf ]]; then
  cmp -s "$new" "$conf" && changed=0
  parse_settings "$conf"
  old_post_down=( "${POST_DOWN[@]}" ) old_dns=$DNS old_table=$TABLE
  cp -p -- "$conf" "$work/previous.conf"
  parse_settings "$new"
fi
restore() {
  if [[ -f $work/previous.conf ]]; then mv -f -- "$work/previous.conf" "$conf"; else rm -f -- "$conf"; fi
  die "$1; the previous $conf is back in place"
}
if [[ $changed -eq 1 ]]; then
  chmod 0600 "$new"
  mv -f -- "$new" "$conf"
fi
chmod 0600 "$conf"

# 4a. Interface down: bring it up the standard way (the systemd unit when it manages /etc/wireguard, so it
#     comes back after a reboot). A restart is harmless here: nothing is running.
if ! wg show "$iface" >/dev/null 2>&1; then
  if systemd_unit; then
    systemctl enable --quiet "wg-quick@$iface" >&2
    systemctl reset-failed "wg-quick@$iface" 2>/dev/null || true
    if ! systemctl restart "wg-quick@$iface" >&2; then
      journalctl -u "wg-quick@$iface" -n 20 --no-pager 2>&1 | redact || true
      restore "wg-quick@$iface failed to start"
    fi
  else
    wg-quick up "$conf" > "$work/up.log" 2>&1 || { redact < "$work/up.log"; restore "wg-quick up failed"; }
    redact < "$work/up.log"
  fi
  echo "wgmesh: $iface up ($(wg show "$iface" peers | wc -l) peers)"
  exit 0
fi

# 4b. Interface up: apply the differences without restarting it, so that the tunnels of unchanged peers carry
#     traffic throughout (handshakes of untouched peers stay). This is `wg syncconf`, done in parts: syncconf
#     always sets the listen port, and wireguard-go closes and reopens its UDP sockets whenever that happens,
#     even for the port it already has, losing what arrives meanwhile (the kernel module ignores it). So the
#     interface's key and port are set only when they change, the peers go in with `wg addconf` (it adds new
#     peers and replaces an existing peer's AllowedIPs, endpoint and keepalive in place), and peers the new
#     config no longer has are removed.
setting() {
  awk -v key="$1" 'tolower($0) ~ "^[[:space:]]*" key "[[:space:]]*=" {
    sub(/^[^=]*=[[:space:]]*/, ""); sub(/[[:space:]]+$/, ""); print; exit
  }' "$work/stripped"
}
#     Order matters when this peer's own key changes (a rotation): the preshared keys derive from the public keys,
#     so (a) the peers (keys, preshared keys, endpoints, AllowedIPs) go in first, under the current private key;
#     (b) then the new private key, which expires every session and lets each peer initiate at once; (c) then
#     one packet to every peer whose entry is new or changed (to all when the own key changed), in the
#     background, so that a handshake starts now. Whichever side of a pair applies last thus initiates one that
#     succeeds; otherwise a failed initiation (the other side not yet updated) would hold the peer for
#     WireGuard's 5 s REKEY_TIMEOUT. Entries are compared in this shell only: the preshared keys never reach argv.
declare -A was_peer=() now_peer=()
while IFS=$'\t' read -r key psk _ allowed _; do was_peer[$key]="$psk $allowed"; done < <(wg show "$iface" dump 2>/dev/null | tail -n +2)
synced_ok=1
new_port=$(setting listenport)
if [[ -n $new_port && $new_port != "$(wg show "$iface" listen-port 2>/dev/null)" ]]; then
  wg set "$iface" listen-port "$new_port" 2>&1 | redact || synced_ok=0
fi
new_fwmark=$(setting fwmark)
if [[ -n $new_fwmark && $new_fwmark != "$(wg show "$iface" fwmark 2>/dev/null)" ]]; then
  wg set "$iface" fwmark "$new_fwmark" 2>&1 | redact || synced_ok=0
fi
awk '/^[[:space:]]*\[/ { in_peer = (tolower($0) ~ /^[[:space:]]*\[peer\]/) } in_peer' "$work/stripped" > "$work/peers.conf"
[[ $synced_ok -eq 1 ]] && wg addconf "$iface" "$work/peers.conf" 2>&1 | redact || synced_ok=0
declare -A wanted_peers=()
while read -r key; do
  wanted_peers[$key]=1
done < <(awk '/^[[:space:]]*\[/ { in_peer = (tolower($0) ~ /^[[:space:]]*\[peer\]/) }
              in_peer && tolower($0) ~ /^[[:space:]]*publickey[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*/, ""); print }' "$work/stripped")
for key in $(wg show "$iface" peers); do
  [[ -n ${wanted_peers[$key]:-} ]] || wg set "$iface" peer "$key" remove || synced_ok=0
done
key_changed=0
new_key=$(setting privatekey)
if [[ $synced_ok -eq 1 && -n $new_key && $new_key != "$(wg show "$iface" private-key 2>/dev/null)" ]]; then
  printf '%s\n' "$new_key" > "$work/private.key"
  wg set "$iface" private-key "$work/private.key" 2>&1 | redact || synced_ok=0
  key_changed=1
fi
unset new_key
[[ $synced_ok -eq 1 ]] || restore "applying the config to $iface failed"
ip link set up dev "$iface"
stats=""
while IFS=$'\t' read -r key psk _ allowed _; do now_peer[$key]="$psk $allowed"; done < <(wg show "$iface" dump 2>/dev/null | tail -n +2)
unset psk
prodded=0
# Each peer's public key and the first host address of its AllowedIPs (its tunnel address, or its relay's).
while read -r key address; do
  [[ -n $address ]] || continue
  [[ $key_changed -eq 1 || ${was_peer[$key]:-} != "${now_peer[$key]:-}" ]] || continue
  pinger=(ping); [[ $address == *:* ]] && pinger=(ping -6)
  # Detached, all output to /dev/null: it never holds the SSH session, and ends by itself within 1 s.
  ( "${pinger[@]}" -n -q -c 1 -W 1 -- "$address" </dev/null >/dev/null 2>&1 & )
  prodded=$((prodded + 1))
done < <(awk '/^[[:space:]]*\[/ { in_peer = (tolower($0) ~ /^[[:space:]]*\[peer\]/); key = "" }
              in_peer && tolower($0) ~ /^[[:space:]]*publickey[[:space:]]*=/ { sub(/^[^=]*=[[:space:]]*/, ""); key = $0 }
              in_peer && key != "" && tolower($0) ~ /^[[:space:]]*allowedips[[:space:]]*=/ {
                sub(/^[^=]*=[[:space:]]*/, ""); n = split($0, prefixes, /[[:space:]]*,[[:space:]]*/)
                for (i = 1; i <= n; i++) if (prefixes[i] ~ /\/(32|128)$/) { sub(/\/.*/, "", prefixes[i]); print key, prefixes[i]; break }
              }' "$work/stripped")
unset was_peer now_peer
[[ $prodded -eq 0 ]] || stats+=", handshakes started with $prodded"
[[ $DNS == "$old_dns" ]] || say "note: DNS changes take effect when $iface restarts"
[[ ${TABLE,,} == "${old_table,,}" ]] || say "note: routes of the old Table = ${old_table:-auto} stay until $iface restarts"

#     Addresses: add the new ones before removing stale ones (no moment without an address). Removing an IPv4
#     primary address also removes the secondaries in its subnet unless promote_secondaries is on: turn it on for
#     this interface, and add missing addresses again at the end in any case.
declare -A want=()
for address in "${ADDRESSES[@]}"; do
  address=${address,,}
  [[ $address == */* ]] || { [[ $address == *:* ]] && address+=/128 || address+=/32; }
  want[$address]=1
done
current_addresses() { ip -o address show dev "$iface" | awk '{print $4}'; }
add_missing_addresses() {
  local have address
  have=" $(current_addresses | tr '\n' ' ') "
  for address in "${!want[@]}"; do
    [[ $have == *" $address "* ]] && continue
    ip address add "$address" dev "$iface" && added_addresses=$((added_addresses + 1))
  done
}
added_addresses=0 removed_addresses=0
echo 1 > "/proc/sys/net/ipv4/conf/$iface/promote_secondaries" 2>/dev/null || true
add_missing_addresses
for address in $(current_addresses); do
  [[ -n ${want[$address]:-} || $address == fe80:* ]] && continue
  ip address del "$address" dev "$iface" && removed_addresses=$((removed_addresses + 1))
done
add_missing_addresses
[[ $added_addresses -eq 0 && $removed_addresses -eq 0 ]] || stats+=", addresses +$added_addresses -$removed_addresses"

#     MTU: only when the config sets one (otherwise wg-quick's choice at up time stays).
if [[ -n $MTU && $(ip -o link show dev "$iface") != *" mtu $MTU "* ]]; then
  ip link set mtu "$MTU" dev "$iface"
  stats+=", mtu $MTU"
fi

#     Routes, as wg-quick up makes them: one per AllowedIPs prefix on this device (in Table = when set, none when
#     off); routes wg-quick made for prefixes no longer allowed go. A /0 uses wg-quick's policy routing, which
#     only a restart sets up.
if [[ ${TABLE,,} != off ]]; then
  table=main
  [[ -z $TABLE || ${TABLE,,} == auto ]] || table=$TABLE
  declare -A allowed=()
  added_routes=0 removed_routes=0
  for prefix in $(wg show "$iface" allowed-ips | awk '{for (i = 2; i <= NF; i++) if ($i ~ /\//) print $i}' | sort -nr -k 2 -t /); do
    allowed[$prefix]=1
    proto=-4; [[ $prefix == *:* ]] && proto=-6
    if [[ $prefix == */0 && $table == main ]]; then
      say "note: $prefix needs wg-quick's policy routing: restart $iface to route it"
      continue
    fi
    if [[ -z $(ip $proto route show dev "$iface" table "$table" match "$prefix" 2>/dev/null) ]]; then
      ip $proto route add "$prefix" dev "$iface" table "$table" && added_routes=$((added_routes + 1))
    fi
  done
  for proto in -4 -6; do
    for destination in $(ip $proto route show dev "$iface" table "$table" proto boot 2>/dev/null | awk '{print $1}'); do
      prefix=$destination
      [[ $prefix == default ]] && { [[ $proto == -4 ]] && prefix=0.0.0.0/0 || prefix=::/0; }
      [[ $prefix == */* ]] || { [[ $proto == -6 ]] && prefix+=/128 || prefix+=/32; }
      [[ -n ${allowed[$prefix]:-} ]] && continue
      ip $proto route del "$destination" dev "$iface" table "$table" && removed_routes=$((removed_routes + 1))
    done
  done
  [[ $added_routes -eq 0 && $removed_routes -eq 0 ]] || stats+=", routes +$added_routes -$removed_routes"
fi

#     Hooks: undo what the old config set up and the new one no longer does (its PostDown lines that are gone),
#     then run every PostUp again: wgmesh's hooks check before they add, so this repairs without duplicating.
hook_failures=0
run_hook() {
  local hook=${1//%i/$iface}
  echo "[#] $hook" >&2
  (eval "$hook") >&2 || { say "hook failed: $hook"; hook_failures=$((hook_failures + 1)); }
}
declare -A keep_down=()
for hook in "${POST_DOWN[@]}"; do keep_down[$hook]=1; done
for hook in "${old_post_down[@]}"; do [[ -n ${keep_down[$hook]:-} ]] || run_hook "$hook"; done
for hook in "${POST_UP[@]}"; do run_hook "$hook"; done
[[ $hook_failures -eq 0 ]] || die "$hook_failures hook(s) failed; $iface runs the new config"
if systemd_unit; then systemctl enable --quiet "wg-quick@$iface" >&2 || true; fi

peers=$(wg show "$iface" peers | wc -l)
if [[ $changed -eq 0 && -z $stats ]]; then
  echo "wgmesh: $iface unchanged ($peers peers)"
else
  echo "wgmesh: $iface synced without restart ($peers peers$stats)"
fi
"""

_UNINSTALL = r"""
# Stop the unit (when systemd manages this interface) so it does not come back at boot, then take the interface
# down with wg-quick, which runs PostDown (removing wgmesh's firewall rules); plain deletion if that fails.
# Only a WireGuard interface of this name is touched. Everything tolerates absence: running twice is fine.
removed=0
if systemd_unit && systemctl is-enabled --quiet "wg-quick@$iface" 2>/dev/null; then
  systemctl disable --now --quiet "wg-quick@$iface" >&2 || true
  removed=1
fi
if wg show "$iface" >/dev/null 2>&1; then
  if [[ ! -f $conf ]] || ! wg-quick down "$conf" > /dev/null 2> >(redact); then
    ip link delete dev "$iface"
  fi
  removed=1
elif ip link show dev "$iface" >/dev/null 2>&1; then
  say "note: $iface exists but is not a WireGuard interface; left alone"
fi
if [[ -f $conf ]]; then rm -f -- "$conf"; removed=1; fi
rm -rf -- "$conf_dir"/.wgmesh-install.* 2>/dev/null || true
if [[ $removed -eq 1 ]]; then echo "wgmesh: $iface removed"; else echo "wgmesh: $iface already absent"; fi
"""

_VERIFY = r"""
# Until every other peer has a handshake and answers a ping at each of its tunnel addresses (both families in a
# dual-stack mesh; the ping is also what starts a handshake), or until the deadline. An address counts once: one
# good ping records its round trip. Every ping waits at most 1 s, so the whole run ends within about timeout + 1 s
# per unreachable address. targets[] holds every address, owners[] the index of its peer in names[]. A peer
# reached through a relay has the relay's key in keys[] (that handshake carries it) and the relay's name, as JSON,
# in vias[].
now_us() { if [[ -n ${EPOCHREALTIME:-} ]]; then echo "${EPOCHREALTIME/./}"; else echo $(($(date +%s%N) / 1000)); fi; }
# IPv6: ping6 where it exists (older iputils and busybox need it; newer iputils link it to ping), else ping -6.
ping6=(ping -6)
command -v ping6 >/dev/null && ping6=(ping6)
started=$(now_us)
deadline=$((started + timeout * 1000000))
declare -a handshake=() answered=() rtt=()
for i in "${!names[@]}"; do handshake[i]=false; done
for j in "${!targets[@]}"; do answered[j]=false rtt[j]=null; done
while :; do
  for j in "${!targets[@]}"; do
    [[ ${answered[j]} == true ]] && continue
    pinger=(ping)
    [[ ${targets[j]} == *:* ]] && pinger=("${ping6[@]}")
    if reply=$("${pinger[@]}" -c 1 -W 1 -- "${targets[j]}" 2>/dev/null); then
      answered[j]=true
      ms=$(sed -n 's/.* time=\([0-9.]*\) ms.*/\1/p' <<<"$reply" | head -n 1)
      rtt[j]=${ms:-null}
    fi
  done
  latest=$(wg show "$iface" latest-handshakes 2>/dev/null || true)
  ok=true
  for i in "${!names[@]}"; do
    stamp=$(awk -v key="${keys[i]}" '$1 == key {print $2}' <<<"$latest")
    [[ -n $stamp && $stamp != 0 ]] && handshake[i]=true
    [[ ${handshake[i]} == true ]] || ok=false
  done
  for j in "${!targets[@]}"; do [[ ${answered[j]} == true ]] || ok=false; done
  [[ $ok == true || $(now_us) -ge $deadline ]] && break
  sleep 0.5
done
# Per peer: "ping" when every address answered, "rtt_ms" of its first address, then each address on its own.
json="{\"ok\": $ok, \"peers\": {"
for i in "${!names[@]}"; do
  [[ $i -eq 0 ]] || json+=", "
  all=true first=null each=""
  for j in "${!targets[@]}"; do
    [[ ${owners[j]} -eq $i ]] || continue
    [[ ${answered[j]} == true ]] || all=false
    if [[ -z $each ]]; then first=${rtt[j]}; else each+=", "; fi
    each+="\"${targets[j]}\": {\"ping\": ${answered[j]}, \"rtt_ms\": ${rtt[j]}}"
  done
  json+="${names[i]}: {\"handshake\": ${handshake[i]}, \"ping\": $all, \"rtt_ms\": $first, \"addresses\": {$each}"
  [[ ${vias[i]} == null ]] || json+=", \"via\": ${vias[i]}"
  json+="}"
done
elapsed=$((($(now_us) - started) / 10000))
json+="}, \"seconds\": $((elapsed / 100)).$(printf %02d $((elapsed % 100)))}"
echo "$json"
# On failure, one line per peer that failed, on stderr (it ends up in the failed update's message): who, what
# was missing, and what was tried.
if [[ $ok != true ]]; then
  for i in "${!names[@]}"; do
    silent=""
    for j in "${!targets[@]}"; do
      [[ ${owners[j]} -eq $i && ${answered[j]} != true ]] && silent+=" ${targets[j]}"
    done
    [[ ${handshake[i]} == true && -z $silent ]] && continue
    what="no handshake"; [[ ${handshake[i]} == true ]] && what="a handshake"
    [[ ${vias[i]} == null ]] || what+=" (with its relay ${vias[i]//\"/})"
    what+="; no ping answer from:${silent:- (all answered)}"
    echo "wgmesh: verify: peer ${names[i]//\"/}: $what; pinged through $iface every 0.5 s for ${timeout}s" >&2
  done
fi
[[ $ok == true ]]
"""

_WAIT_FOR_BOOT = r"""
# A fresh cloud server runs its user data (which installs WireGuard) after sshd already accepts logins: wait for
# cloud-init when the host has it, then for the tools themselves (hosts without cloud-init, or set up by hand,
# only need the tools). Runs in a subshell reading /dev/null, so the install script after it still gets stdin.
(
  deadline=$((SECONDS + timeout))
  if command -v cloud-init >/dev/null; then
    status=0
    timeout "$timeout" cloud-init status --wait >/dev/null 2>&1 || status=$?
    if [[ $status -eq 124 ]]; then
      echo "wgmesh: cloud-init still running after ${timeout}s" >&2
      exit 1
    fi
    [[ $status -eq 0 ]] || echo "wgmesh: note: cloud-init finished with status $status; continuing" >&2
  fi
  until command -v wg >/dev/null && command -v wg-quick >/dev/null; do
    if [[ $SECONDS -ge $deadline ]]; then
      echo "wgmesh: wg and wg-quick still missing after ${timeout}s (see /var/log/cloud-init-output.log)" >&2
      exit 1
    fi
    sleep 2
  done
) </dev/null
"""

_USER_DATA = r"""#!/bin/bash
# wgmesh user data: install WireGuard's tools and iptables, turn on forwarding for good. No secret in here: the
# keys arrive later over SSH (the install step), never through user data, which EC2 shows to anyone allowed to
# describe the instance.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

# Forwarding lets this peer route between the tunnel and its subnets; the file keeps it across reboots.
printf '%s\n' @SYSCTL@ > /etc/sysctl.d/99-wgmesh.conf
sysctl -q -p /etc/sysctl.d/99-wgmesh.conf

# Package managers at boot compete with unattended upgrades: wait for the lock, retry the mirrors a few times.
retry() { local n; for n in 1 2 3 4 5; do "$@" && return 0; sleep $((n * 5)); done; return 1; }
if command -v apt-get >/dev/null; then
  retry apt-get -o DPkg::Lock::Timeout=300 update -q
  retry apt-get -o DPkg::Lock::Timeout=300 install -y -q wireguard-tools iptables@PACKAGES@
  # Kernels before 5.6 without the module: the userspace implementation, which wg-quick falls back to.
  modprobe wireguard 2>/dev/null || retry apt-get -o DPkg::Lock::Timeout=300 install -y -q wireguard-go || true
elif command -v dnf >/dev/null; then
  retry dnf install -y -q wireguard-tools iptables@PACKAGES@
elif command -v yum >/dev/null; then
  retry yum install -y -q wireguard-tools iptables@PACKAGES@
else
  echo "wgmesh: no apt-get, dnf or yum: install wireguard-tools and iptables by hand" >&2
  exit 1
fi
"""


# Every script runs under bash, named by its path, whatever root's (or the SSH user's) login shell is: sshd hands
# the command to that shell (`<shell> -c <command>`), and on a host whose shell is dash (Debian's /bin/sh, some
# images' root) `set -o pipefail` and `[[` fail. So what the login shell reads is this POSIX sh wrapper only: it
# finds bash and runs the script with it, without profile or rc files (a noisy .bashrc, aliases, `set -u` in a
# profile cannot reach the script). The script goes on bash's command line from a quoted here-document: it stays
# readable in a preview, and stdin (the config) flows through to it untouched. It holds no secret.
_POSIX_WRAPPER = """\
# Run by bash (by path), whatever the login shell is, without profile or rc files: see hostside/install.py.
if [ -x /bin/bash ]; then wgmesh_bash=/bin/bash; elif [ -x /usr/bin/bash ]; then wgmesh_bash=/usr/bin/bash; else
  echo "wgmesh: this host has no /bin/bash; install bash" >&2; exit 1
fi
@RUN@"$wgmesh_bash" --noprofile --norc -c "$(cat <<'WGMESH_SCRIPT'
@SCRIPT@
WGMESH_SCRIPT
)" @NAME@@TAIL@
"""


def posix_wrapped(script: str, name: str, *, last: bool = True) -> str:
    """``script`` (bash) as a command any POSIX login shell runs the same way: see :data:`_POSIX_WRAPPER`.

    ``last``: the wrapper ``exec``s bash (nothing may follow); otherwise bash runs with stdin from /dev/null and
    the wrapper stops on its failure, so that another wrapped script can follow (the boot wait, then the install).
    """
    if "\nWGMESH_SCRIPT\n" in f"\n{script}\n":
        raise ValueError("the script contains the here-document's end marker")
    return _fill(
        _POSIX_WRAPPER,
        RUN="exec " if last else "",
        SCRIPT=script.rstrip("\n"),
        NAME=shlex.quote(name),
        TAIL="" if last else " </dev/null || exit $?",
    )


def inner_script(wrapped: str) -> str:
    """The bash script inside a :func:`posix_wrapped` command (for checks such as ``bash -n`` and shellcheck)."""
    start = wrapped.index("<<'WGMESH_SCRIPT'\n") + len("<<'WGMESH_SCRIPT'\n")
    return wrapped[start : wrapped.index("\nWGMESH_SCRIPT\n", start)] + "\n"


def _check_interface(interface: str) -> None:
    if not INTERFACE_NAME.match(interface):
        raise ValueError(f"{interface!r} is not a usable interface name (1-15 of letters, digits and _=+.-)")


def _check_conf_dir(conf_dir: str) -> None:
    if not conf_dir.startswith("/") or "\n" in conf_dir or "\0" in conf_dir:
        raise ValueError(f"conf_dir must be an absolute path, got {conf_dir!r}")


def _fill(template: str, **values: str) -> str:
    """``template`` with each ``@NAME@`` replaced by its value: values are shell-quoted by the callers."""
    for name, value in values.items():
        template = template.replace(f"@{name}@", value)
    return template


def _assignments(**values: str) -> str:
    """``name=<quoted value>`` lines: the only place caller-supplied values enter a script."""
    return "".join(f"{name}={shlex.quote(value)}\n" for name, value in values.items())


def install_script(interface: str = "wg0", conf_dir: str = DEFAULT_CONF_DIR) -> str:
    """The script that installs the wg-quick config read on stdin as ``<conf_dir>/<interface>.conf`` and applies it.

    Steps and why:

    1. stdin goes straight into a 0700 temp directory inside ``conf_dir`` (umask 077): the secret never touches a
       command line, and the final ``mv`` is an atomic rename on the same filesystem.
    2. Validation before any change: ``wg-quick strip`` (wg-quick's parser, the temp file named ``<iface>.conf``),
       ``bash -n`` of the hooks, then, in a throwaway ``unshare --net`` namespace, ``wg setconf`` on a scratch
       WireGuard device plus ``ip address add`` of each Address (and MTU, Table): the real parsers, with no way to
       disturb the live interface. A rejected config exits 1 with a redacted message; file and interface stay.
    3. Atomic rename to ``<conf_dir>/<interface>.conf`` (0600), skipped when the bytes are unchanged.
    4. Interface down: ``systemctl restart wg-quick@<iface>`` (enabled, when systemd manages /etc/wireguard) or
       ``wg-quick up <file>``. Interface up: ``wg syncconf``'s effect, in parts (key and port only when changed,
       ``wg addconf`` for the peers, stale peers removed; hitless: untouched peers keep sessions, wireguard-go keeps its sockets), then
       addresses, MTU and AllowedIPs routes are reconciled in place, stale PostDown hooks run and PostUp hooks
       re-run (idempotent by construction). No restart, so traffic through the mesh is not interrupted.

    Prints one line on stdout, e.g. ``wgmesh: wg0 synced without restart (2 peers, routes +1 -1)``.

    Left for the next restart of the interface (a note on stderr says so): DNS changes, a changed ``Table =``
    (the old table's routes stay), a new ``/0`` in AllowedIPs with the default table (it needs wg-quick's policy
    routing). PreUp/PreDown only ever run at up/down.
    """
    _check_interface(interface)
    _check_conf_dir(conf_dir)
    header = "# wgmesh: install the wg-quick config given on stdin, hitless when the interface is already up.\n"
    variables = _assignments(iface=interface, conf_dir=conf_dir.rstrip("/") or "/") + 'conf="$conf_dir/$iface.conf"\n'
    return posix_wrapped(header + _PRELUDE + variables + _HELPERS + _PARSE_SETTINGS + _SCRATCH_CHECK + _INSTALL, "wgmesh-install")


def uninstall_script(interface: str = "wg0", conf_dir: str = DEFAULT_CONF_DIR) -> str:
    """The script that takes the interface down (PostDown runs) and removes its config file; idempotent."""
    _check_interface(interface)
    _check_conf_dir(conf_dir)
    header = "# wgmesh: remove the WireGuard interface and its config file (succeeds when already gone).\n"
    variables = _assignments(iface=interface, conf_dir=conf_dir.rstrip("/") or "/") + 'conf="$conf_dir/$iface.conf"\n'
    return posix_wrapped(header + _PRELUDE + variables + _HELPERS + _UNINSTALL, "wgmesh-uninstall")


def _bash_array(name: str, values: Sequence[str]) -> str:
    return f"{name}=({' '.join(shlex.quote(value) for value in values)})\n"


def verify_script(
    interface: str,
    peers: Sequence[tuple[str, str, Sequence[str]]],
    *,
    timeout_seconds: int = 90,
    relays: Mapping[str, str] | None = None,
) -> str:
    """The script that checks this peer reaches every tunnel address of every other one, relayed ones included.

    ``peers`` are ``(name, public_key, tunnel_ips)`` of every other peer: all its tunnel addresses (one per tunnel
    network, so both families in a dual-stack mesh), each pinged on its own. ``relays`` maps the names of peers
    this one reaches through a relay to that relay, and for those ``public_key`` is the relay's (the handshake
    that carries them). Prints one JSON line::

        {"ok": bool, "seconds": float, "peers": {name: {"handshake": bool, "ping": bool, "rtt_ms": float|null,
                                                        "addresses": {ip: {"ping": bool, "rtt_ms": float|null}}}}}

    where a peer's ``ping`` is true when every one of its addresses answered and ``rtt_ms`` is its first
    address's, and a relayed peer's entry also has ``"via": relay``. Exits 0 when every peer has a handshake and
    every address answered, 1 otherwise (at the latest after ``timeout_seconds`` plus one second per unreachable
    address).
    """
    _check_interface(interface)
    if timeout_seconds < 0:
        raise ValueError("timeout_seconds must be >= 0")
    relays = relays or {}
    names, keys, vias, targets, owners = [], [], [], [], []
    for index, (name, key, addresses) in enumerate(peers):
        try:
            if len(base64.b64decode(key, validate=True)) != 32:
                raise ValueError
        except (binascii.Error, ValueError):
            raise ValueError(f"peer {name!r}: {key!r} is not a WireGuard public key") from None
        if isinstance(addresses, str) or not addresses:
            raise ValueError(f"peer {name!r}: give its tunnel addresses as a non-empty list, not {addresses!r}")
        names.append(json.dumps(name))  # already JSON: the script pastes it into its output as is
        keys.append(key)
        vias.append(json.dumps(relays[name]) if name in relays else "null")
        for address in addresses:
            targets.append(str(ipaddress.ip_address(address.split("/")[0])))  # canonical text: a JSON key as is
            owners.append(str(index))
    header = "# wgmesh: check every other peer handshakes and answers ping at each tunnel address; JSON on stdout.\n"
    variables = (
        _assignments(iface=interface, timeout=str(int(timeout_seconds)))
        + _bash_array("names", names)
        + _bash_array("keys", keys)
        + _bash_array("vias", vias)
        + _bash_array("targets", targets)
        + _bash_array("owners", owners)
    )
    return posix_wrapped(header + _PRELUDE + variables + _VERIFY, "wgmesh-verify")


def wait_for_boot_script(timeout_seconds: int = 600) -> str:
    """A prefix for the install script: wait (bounded) for cloud-init and the WireGuard tools, without reading stdin.

    It never exits on success, so the script it is prepended to runs next; it needs no root.
    """
    if timeout_seconds < 1:
        raise ValueError("timeout_seconds must be >= 1")
    header = "# wgmesh: wait for the host to finish booting (cloud-init, then wg and wg-quick installed).\n"
    return posix_wrapped(
        header + "set -euo pipefail\n" + _assignments(timeout=str(int(timeout_seconds))) + _WAIT_FOR_BOOT, "wgmesh-wait", last=False
    )


def user_data_script(*, ipv6_forwarding: bool = True, extra_packages: Sequence[str] = ()) -> str:
    """EC2 user data (run once by cloud-init as root): WireGuard tools, iptables and persistent IP forwarding.

    Holds no secret by design: instance user data is readable by anyone who may describe the instance.
    """
    for package in extra_packages:
        if not re.match(r"^[a-zA-Z0-9][a-zA-Z0-9.+:~-]*$", package):
            raise ValueError(f"{package!r} is not a package name")
    sysctl = ["net.ipv4.ip_forward=1"] + (["net.ipv6.conf.all.forwarding=1"] if ipv6_forwarding else [])
    return _fill(_USER_DATA, SYSCTL=" ".join(map(shlex.quote, sysctl)), PACKAGES="".join(f" {package}" for package in extra_packages))
