export const SECCOMP_ALLOW: readonly string[] = [];
