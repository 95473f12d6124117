#!/usr/bin/env node
/**
 * The `handlefs-virtiofsd` executable (package.json bin): `handlefs virtiofsd ARGS`, for the VMMs
 * and libvirt that run a virtiofsd binary by path. main.js reads process.argv, so the command is
 * put in front of the arguments before it is loaded.
 */
process.argv.splice(2, 0, 'virtiofsd');
await import('./main.js');
