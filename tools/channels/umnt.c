/*
 * umnt PATH [lazy]: umount2(PATH, UMOUNT_NOFOLLOW [| MNT_DETACH]). Unlike
 * umount(8) it does not stat the target first, which hangs on a FUSE mount
 * whose server does not answer (e.g. an io_uring connection not yet ready).
 */
#include <stdio.h>
#include <sys/mount.h>

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s PATH [lazy]\n", argv[0]);
		return 2;
	}
	int flags = UMOUNT_NOFOLLOW | (argc > 2 ? MNT_DETACH : 0);
	if (umount2(argv[1], flags)) {
		perror("umount2");
		return 1;
	}
	return 0;
}
