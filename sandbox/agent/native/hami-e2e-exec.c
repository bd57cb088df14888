/*
 * hami-e2e-exec: `kubectl exec` into a container the sandbox's node agent runs.
 *
 * kwok serves the kubelet's exec API by running the command as a local process. In the sandbox kwok runs chrooted
 * in a folder whose only programs are links to this one (see sandbox/agent/kubectl_exec.py), so whatever a user execs lands
 * here, never on the host. kwok passes HAMI_E2E_EXEC=<file> (from the pod's kwok Exec object); the file, written
 * by the node agent each time the container starts, names the container's main process and its user, working
 * folder and environment:
 *
 *     pid=<pid>  uid=<uid>  gid=<gid>  workdir=<dir>  timeout=<seconds>  env=<NAME=value> (one per line, repeated)
 *
 * This program enters that process's mount, UTS and network namespaces and its root (as nsenter --root does),
 * drops to the container's user, arms an alarm so the command cannot outlive the timeout, and execs the command
 * found on the container's PATH. Exit codes as a container runtime gives them: 127 not found, 126 not executable,
 * 125 the container is not running or the exec file is unusable. Built static: kwok's root holds no libraries.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_ENV 512
#define LINE 8192

static int fail(int code, const char *what, const char *detail) {
    fprintf(stderr, "hami-e2e-exec: %s%s%s\n", what, detail ? ": " : "", detail ? detail : "");
    return code;
}

static int enter(int pid, const char *kind, int nstype) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/%s", pid, kind);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, nstype) != 0) {
        return -1;
    }
    close(fd);
    return 0;
}

int main(int argc, char **argv) {
    const char *spec = getenv("HAMI_E2E_EXEC");
    if (argc < 1 || spec == NULL) {
        return fail(125, "HAMI_E2E_EXEC is not set", "exec works only for containers the node agent runs");
    }
    FILE *file = fopen(spec, "r");
    if (file == NULL) {
        return fail(125, "the container is not running", spec);
    }
    static char *env[MAX_ENV + 1];
    int count = 0, pid = 0;
    unsigned timeout = 0;
    uid_t uid = 0;
    gid_t gid = 0;
    char workdir[LINE] = "/", line[LINE];
    while (fgets(line, sizeof line, file) != NULL) {
        line[strcspn(line, "\n")] = '\0';
        if (strncmp(line, "pid=", 4) == 0) {
            pid = atoi(line + 4);
        } else if (strncmp(line, "uid=", 4) == 0) {
            uid = (uid_t)strtoul(line + 4, NULL, 10);
        } else if (strncmp(line, "gid=", 4) == 0) {
            gid = (gid_t)strtoul(line + 4, NULL, 10);
        } else if (strncmp(line, "timeout=", 8) == 0) {
            timeout = (unsigned)strtoul(line + 8, NULL, 10);
        } else if (strncmp(line, "workdir=", 8) == 0) {
            snprintf(workdir, sizeof workdir, "%s", line + 8);
        } else if (strncmp(line, "env=", 4) == 0 && count < MAX_ENV) {
            env[count++] = strdup(line + 4);
        }
    }
    fclose(file);
    env[count] = NULL;
    char root_path[64];
    snprintf(root_path, sizeof root_path, "/proc/%d/root", pid);
    int root = open(root_path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pid <= 0 || root < 0) {
        return fail(125, "the container is not running", spec);
    }
    if (enter(pid, "net", CLONE_NEWNET) != 0 || enter(pid, "uts", CLONE_NEWUTS) != 0 ||
        enter(pid, "mnt", CLONE_NEWNS) != 0) {
        return fail(125, "cannot enter the container's namespaces", strerror(errno));
    }
    if (fchdir(root) != 0 || chroot(".") != 0 || chdir(workdir) != 0) {
        return fail(125, "cannot enter the container's root", strerror(errno));
    }
    close(root);
    if (gid != 0 && (setgroups(0, NULL) != 0 || setgid(gid) != 0)) {
        return fail(125, "cannot switch group", strerror(errno));
    }
    if (uid != 0 && setuid(uid) != 0) {
        return fail(125, "cannot switch user", strerror(errno));
    }
    clearenv();
    for (int i = 0; i < count; i++) {
        putenv(env[i]);
    }
    if (timeout > 0) {
        alarm(timeout);  /* kept across exec: SIGALRM ends the command after the timeout */
    }
    const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    char *program = argv[0][0] == '/' ? argv[0] : (char *)name;
    argv[0] = (char *)name;
    execvp(program, argv);
    if (errno == ENOENT) {
        fprintf(stderr, "exec: \"%s\": executable file not found in $PATH\n", program);
        return 127;
    }
    return fail(126, program, strerror(errno));
}
