#!/bin/sh
# Regenerates the test certificates (run once; the PEM files are checked in): a
# self-signed CA and two leaves it signs, all valid for 100 years, for 127.0.0.1 and
# localhost. tests/network.rs serves leaf-a, then rewrites the files with leaf-b to see
# the gateway pick up the new certificate. Needs the openssl command line tool.
set -eu
cd "$(dirname "$0")"
days=36500
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key
openssl req -x509 -new -key ca.key -days "$days" -subj "/CN=switchyard test CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
  -out ca.pem
for leaf in leaf-a leaf-b; do
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$leaf.key"
  openssl req -new -key "$leaf.key" -subj "/CN=switchyard test $leaf" -out "$leaf.csr"
  printf 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$leaf.ext"
  openssl x509 -req -in "$leaf.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days "$days" \
    -extfile "$leaf.ext" -out "$leaf.pem"
  rm "$leaf.csr" "$leaf.ext"
done
rm -f ca.srl ca.key
