{
  "targets": [
    {
      "target_name": "handlefs_sys",
      "sources": [
        "src/addon.c",
        "src/errors.c",
        "src/fs.c",
        "src/ns.c",
        "src/io.c",
        "src/dir.c",
        "src/handle.c",
        "src/xattr.c",
        "src/lock.c",
        "src/proc.c",
        "src/dev.c",
        "src/poll.c",
        "src/notify.c",
        "src/vhost.c",
        "src/uring.c"
      ],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "cflags!": ["-Wno-unused-parameter"],
      "ldflags": ["-pthread"],
      "configurations": {
        "Release": {
          "cflags!": ["-O3"],
          "cflags": ["-O2"]
        }
      }
    },
    {
      "target_name": "handlefs-sandbox",
      "type": "executable",
      "sources": ["src/sandbox.c"],
      "defines": ["_GNU_SOURCE"],
      "cflags_c": ["-std=gnu11"],
      "cflags": ["-Wall", "-Wextra", "-Werror"],
      "libraries": ["-lseccomp"]
    }
  ]
}
