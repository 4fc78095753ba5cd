/*
 * linux-cr checkpoint image records, version v23 (user-cr 1fd8e6e, "ckpt-v23-rc2"), x86_64.
 *
 * The one home of the record layouts and of the CKPT_HDR_ / CKPT_OBJ_ numbers the engine
 * writes. Every record starts with struct ckpt_hdr; len counts the header too. Records are
 * concatenated without padding; the fixed structs are aligned(8) with explicit padding so
 * their sizes match the kernel's, which the static asserts at the end pin down.
 */
#ifndef CKPT_HDR_H
#define CKPT_HDR_H

#include <stddef.h>
#include <linux/types.h>

#define CKPT_ALIGNED __attribute__((aligned(8)))

#define CHECKPOINT_MAGIC_HEAD	0x00feed0cc0a2d200ULL
#define CHECKPOINT_MAGIC_TAIL	0x002d2a0cc0deef00ULL
#define CHECKPOINT_VERSION	6	/* hdr.rev: shared by v21, v23-rc1 and v23 */
#define CHECKPOINT_SUBTREE	0x1

/* the kernel version a v23 image claims (header major.minor.patch) */
#define CKPT_KERNEL_MAJOR	2
#define CKPT_KERNEL_MINOR	6
#define CKPT_KERNEL_PATCH	38

#define CKPT_ARCH_X86_64	2

/* record types */
#define CKPT_HDR_HEADER			1
#define CKPT_HDR_HEADER_ARCH		2
#define CKPT_HDR_CONTAINER		3
#define CKPT_HDR_BUFFER			4
#define CKPT_HDR_STRING			5
#define CKPT_HDR_OBJREF			6
#define CKPT_HDR_LSM_INFO		7
#define CKPT_HDR_SECURITY		8
#define CKPT_HDR_PIDS			101
#define CKPT_HDR_TREE			102
#define CKPT_HDR_TASK			103
#define CKPT_HDR_TASK_NS		104
#define CKPT_HDR_TASK_OBJS		105
#define CKPT_HDR_RESTART_BLOCK		106
#define CKPT_HDR_THREAD			107
#define CKPT_HDR_CPU			108
#define CKPT_HDR_NS			109
#define CKPT_HDR_UTS_NS			110
#define CKPT_HDR_IPC_NS			111
#define CKPT_HDR_MNT_NS			112
#define CKPT_HDR_CAPABILITIES		113
#define CKPT_HDR_USER_NS		114
#define CKPT_HDR_CRED			115
#define CKPT_HDR_USER			116
#define CKPT_HDR_GROUPINFO		117
#define CKPT_HDR_TASK_CREDS		118
#define CKPT_HDR_CPU_FPU		201
#define CKPT_HDR_MM_CONTEXT_LDT		202
#define CKPT_HDR_FILE_TABLE		301
#define CKPT_HDR_FILE_DESC		302
#define CKPT_HDR_FILE_NAME		303
#define CKPT_HDR_FILE			304
#define CKPT_HDR_PIPE_BUF		305
#define CKPT_HDR_TTY			306
#define CKPT_HDR_TTY_LDISC		307
#define CKPT_HDR_EPOLL_ITEMS		308
#define CKPT_HDR_MM			401
#define CKPT_HDR_VMA			402
#define CKPT_HDR_PGARR			403
#define CKPT_HDR_HPAGE			404
#define CKPT_HDR_MM_CONTEXT		405
#define CKPT_HDR_FS			451
#define CKPT_HDR_IPC			501
#define CKPT_HDR_IPC_SHM		502
#define CKPT_HDR_IPC_MSG		503
#define CKPT_HDR_IPC_MSG_MSG		504
#define CKPT_HDR_IPC_SEM		505
#define CKPT_HDR_TASK_SEM_UNDO_LIST	506
#define CKPT_HDR_TASK_SEM_UNDO		507
#define CKPT_HDR_SIGHAND		601
#define CKPT_HDR_SIGNAL			602
#define CKPT_HDR_SIGNAL_TASK		603
#define CKPT_HDR_SIGPENDING		604
#define CKPT_HDR_SOCKET			701
#define CKPT_HDR_SOCKET_QUEUE		702
#define CKPT_HDR_SOCKET_BUFFER		703
#define CKPT_HDR_SOCKET_FRAG		704
#define CKPT_HDR_SOCKET_UNIX		705
#define CKPT_HDR_SOCKET_INET		706
#define CKPT_HDR_NET_NS			707
#define CKPT_HDR_NETDEV			708
#define CKPT_HDR_NETDEV_ADDR		709
#define CKPT_HDR_TAIL			9001
#define CKPT_HDR_ERROR			9999

/* object types (OBJREF.objtype) */
#define CKPT_OBJ_IGNORE		0
#define CKPT_OBJ_PID		1
#define CKPT_OBJ_INODE		2
#define CKPT_OBJ_FILE_TABLE	3
#define CKPT_OBJ_FILE		4
#define CKPT_OBJ_MM		5
#define CKPT_OBJ_FS		6
#define CKPT_OBJ_SIGHAND	7
#define CKPT_OBJ_SIGNAL		8
#define CKPT_OBJ_NS		9
#define CKPT_OBJ_UTS_NS		10
#define CKPT_OBJ_IPC_NS		11
#define CKPT_OBJ_MNT_NS		12
#define CKPT_OBJ_USER_NS	13
#define CKPT_OBJ_CRED		14
#define CKPT_OBJ_USER		15
#define CKPT_OBJ_GROUPINFO	16
#define CKPT_OBJ_SOCK		17
#define CKPT_OBJ_TTY		18
#define CKPT_OBJ_SECURITY_PTR	19
#define CKPT_OBJ_SECURITY	20
#define CKPT_OBJ_NET_NS		21
#define CKPT_OBJ_NETDEV		22
#define CKPT_OBJ_SEM_UNDO	23
#define CKPT_OBJ_MAX		24

/* file_type */
#define CKPT_FILE_IGNORE	0	/* extension object records (imgtools) */
#define CKPT_FILE_GENERIC	1
#define CKPT_FILE_PIPE		2
#define CKPT_FILE_FIFO		3
#define CKPT_FILE_SOCKET	4
#define CKPT_FILE_TTY		5
#define CKPT_FILE_EPOLL		6
#define CKPT_FILE_EVENTFD	7

/* vma_type */
#define CKPT_VMA_VDSO		1
#define CKPT_VMA_ANON		2
#define CKPT_VMA_FILE		3
#define CKPT_VMA_SHM_ANON	4
#define CKPT_VMA_SHM_ANON_SKIP	5
#define CKPT_VMA_SHM_FILE	6
#define CKPT_VMA_SHM_IPC	7
#define CKPT_VMA_SHM_IPC_SKIP	8

/* restart_block_type */
#define CKPT_RESTART_BLOCK_NONE	1

/* task flags (translated from PF_*) */
#define CKPT_PF_FORKNOEXEC	0x1
#define CKPT_PF_SUPERPRIV	0x2

/* x86 segment selector encoding */
#define CKPT_X86_SEG_NULL	0
#define CKPT_X86_SEG_USER32_CS	1
#define CKPT_X86_SEG_USER32_DS	2
#define CKPT_X86_SEG_USER64_CS	3
#define CKPT_X86_SEG_USER64_DS	4
#define CKPT_X86_SEG_TLS	0x4000
#define CKPT_X86_SEG_LDT	0x8000

/* task state values of the 2.6.38 kernel the image claims */
#define CKPT_TASK_RUNNING		0
#define CKPT_TASK_INTERRUPTIBLE		1
#define CKPT_TASK_UNINTERRUPTIBLE	2
#define CKPT_TASK_STOPPED		4
#define CKPT_TASK_TRACED		8
#define CKPT_TASK_DEAD			64
#define CKPT_EXIT_ZOMBIE		16
#define CKPT_EXIT_DEAD			32

#define CKPT_ARCH_NSIG		64
#define CKPT_RLIM_NLIMITS	16
#define CKPT_NEW_UTS_LEN	64
#define CKPT_TASK_COMM_LEN	16
#define CKPT_AT_VECTOR_SIZE	50	/* 2 * (2 + 22 + 1) auxv words */
#define CKPT_N_TTY_BUF_SIZE	4096
#define CKPT_TTY_NCCS		19
#define CKPT_TLS_ENTRIES	3
#define CKPT_PGARR_BATCH	512

struct ckpt_hdr {
	__u32 type;
	__u32 len;
} CKPT_ALIGNED;

struct ckpt_const {
	__u16 task_comm_len;
	__u16 at_vector_size;
	__u16 signal_nsig;
	__u16 uts_sysname_len;
	__u16 uts_nodename_len;
	__u16 uts_release_len;
	__u16 uts_version_len;
	__u16 uts_machine_len;
	__u16 uts_domainname_len;
	__u16 rlimit_nlimits;
	__u16 n_tty_buf_size;
	__u16 tty_termios_nccs;
} CKPT_ALIGNED;

struct ckpt_hdr_header {
	struct ckpt_hdr h;
	__u64 magic;
	__u16 arch_id;
	__u16 major;
	__u16 minor;
	__u16 patch;
	__u16 rev;
	__u16 _padding[3];
	struct ckpt_const constants;
	__u64 time;
	__u64 uflags;
} CKPT_ALIGNED;

struct ckpt_hdr_header_arch {
	struct ckpt_hdr h;
	__u16 has_fxsr;
	__u16 has_xsave;
	__u16 xstate_size;
	__u16 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_container {
	struct ckpt_hdr h;
} CKPT_ALIGNED;

struct ckpt_hdr_tail {
	struct ckpt_hdr h;
	__u64 magic;
} CKPT_ALIGNED;

struct ckpt_hdr_objref {
	struct ckpt_hdr h;
	__u32 objtype;
	__s32 objref;
} CKPT_ALIGNED;

/* pids */
struct ckpt_hdr_pids {
	struct ckpt_hdr h;
	__u32 nr_pids;
	__u32 nr_vpids;
	__u32 offset;
	__u32 _padding;
} CKPT_ALIGNED;

/* one PIDS BUFFER entry of depth 0 (entries are 8 + 4 * depth bytes, packed) */
struct ckpt_pids {
	__u32 depth;
	__s32 numbers[1];
};

struct ckpt_hdr_tree {
	struct ckpt_hdr h;
	__u32 nr_tasks;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_task_pids {
	__s32 vpid;
	__s32 vppid;
	__s32 vtgid;
	__s32 vpgid;
	__s32 vsid;
	__u32 depth;
} CKPT_ALIGNED;

/* task */
struct ckpt_hdr_task {
	struct ckpt_hdr h;
	__u32 flags;
	__u32 state;
	__u32 exit_state;
	__u32 exit_code;
	__u32 exit_signal;
	__u32 pdeath_signal;
	__u64 set_child_tid;
	__u64 clear_child_tid;
	__u64 sas_ss_sp;
	__u32 sas_ss_size;
	__u32 compat_robust_futex_head_len;
	__u32 compat_robust_futex_list;
	__u32 robust_futex_head_len;
	__u64 robust_futex_list;
} CKPT_ALIGNED;

struct ckpt_hdr_task_ns {
	struct ckpt_hdr h;
	__s32 ns_objref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_task_objs {
	struct ckpt_hdr h;
	__s32 files_objref;
	__s32 mm_objref;
	__s32 fs_objref;
	__s32 sem_undo_objref;
	__s32 sighand_objref;
	__s32 signal_objref;
} CKPT_ALIGNED;

struct ckpt_hdr_restart_block {
	struct ckpt_hdr h;
	__u64 function_type;
	__u64 arg_0;
	__u64 arg_1;
	__u64 arg_2;
	__u64 arg_3;
	__u64 arg_4;
} CKPT_ALIGNED;

/* x86 thread: followed inline by the raw TLS descriptors (sizeof_tls_array bytes) */
struct ckpt_hdr_thread {
	struct ckpt_hdr h;
	__u64 sysenter_return;
	__u32 thread_info_flags;
	__u16 gdt_entry_tls_entries;
	__u16 sizeof_tls_array;
} CKPT_ALIGNED;

struct ckpt_hdr_cpu {
	struct ckpt_hdr h;
	__u64 r15;
	__u64 r14;
	__u64 r13;
	__u64 r12;
	__u64 bp;
	__u64 bx;
	__u64 r11;
	__u64 r10;
	__u64 r9;
	__u64 r8;
	__u64 ax;
	__u64 cx;
	__u64 dx;
	__u64 si;
	__u64 di;
	__u64 orig_ax;
	__u64 ip;
	__u64 sp;
	__u64 flags;
	__u64 fs;
	__u64 gs;
	__u16 fsindex;
	__u16 gsindex;
	__u16 cs;
	__u16 ss;
	__u16 ds;
	__u16 es;
	__u32 used_math;
} CKPT_ALIGNED;

struct ckpt_hdr_mm_context {
	struct ckpt_hdr h;
	__u64 vdso;
	__u32 ldt_entry_size;
	__u32 nldt;
} CKPT_ALIGNED;

/* namespaces */
struct ckpt_hdr_ns {
	struct ckpt_hdr h;
	__s32 uts_objref;
	__s32 ipc_objref;
	__s32 net_objref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_utsns {
	struct ckpt_hdr h;
	char sysname[CKPT_NEW_UTS_LEN + 1];
	char nodename[CKPT_NEW_UTS_LEN + 1];
	char release[CKPT_NEW_UTS_LEN + 1];
	char version[CKPT_NEW_UTS_LEN + 1];
	char machine[CKPT_NEW_UTS_LEN + 1];
	char domainname[CKPT_NEW_UTS_LEN + 1];
	char _padding[2];
} CKPT_ALIGNED;

struct ckpt_hdr_ipcns {
	struct ckpt_hdr h;
	__u64 shm_ctlmax;
	__u64 shm_ctlall;
	__s32 shm_ctlmni;
	__s32 msg_ctlmax;
	__s32 msg_ctlmnb;
	__s32 msg_ctlmni;
	__s32 sem_ctl_msl;
	__s32 sem_ctl_mns;
	__s32 sem_ctl_opm;
	__s32 sem_ctl_mni;
} CKPT_ALIGNED;

struct ckpt_hdr_ipc {
	struct ckpt_hdr h;
	__u32 ipc_type;
	__u32 ipc_count;
} CKPT_ALIGNED;

/* credentials */
struct ckpt_capabilities {
	__u32 cap_i_0, cap_i_1;	/* inheritable */
	__u32 cap_p_0, cap_p_1;	/* permitted */
	__u32 cap_e_0, cap_e_1;	/* effective */
	__u32 cap_b_0, cap_b_1;	/* bounding set */
	__u32 securebits;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_task_creds {
	struct ckpt_hdr h;
	__s32 cred_ref;
	__s32 ecred_ref;
} CKPT_ALIGNED;

struct ckpt_hdr_cred {
	struct ckpt_hdr h;
	__u32 uid, suid, euid, fsuid;
	__u32 gid, sgid, egid, fsgid;
	__s32 user_ref;
	__s32 groupinfo_ref;
	__s32 sec_ref;
	__u32 _padding;
	struct ckpt_capabilities cap_s;
} CKPT_ALIGNED;

struct ckpt_hdr_user {
	struct ckpt_hdr h;
	__u32 uid;
	__s32 userns_ref;
} CKPT_ALIGNED;

struct ckpt_hdr_user_ns {
	struct ckpt_hdr h;
	__s32 creator_ref;
	__u32 _padding;
} CKPT_ALIGNED;

/* groups[] start at 12, sizeof is 16: a record of n groups is 16 + 4n long (4 spare bytes) */
struct ckpt_hdr_groupinfo {
	struct ckpt_hdr h;
	__u32 ngroups;
	__u32 groups[];
} CKPT_ALIGNED;

/* files */
struct ckpt_hdr_file_table {
	struct ckpt_hdr h;
	__s32 fdt_nfds;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_file_desc {
	struct ckpt_hdr h;
	__s32 fd_objref;
	__s32 fd_descriptor;
	__u32 fd_close_on_exec;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_file {
	struct ckpt_hdr h;
	__u32 f_type;
	__u32 f_mode;
	__u32 f_flags;
	__s32 f_credref;
	__u64 f_pos;
	__u64 f_version;
	__s32 f_secref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_file_generic {
	struct ckpt_hdr_file common;
} CKPT_ALIGNED;

struct ckpt_hdr_file_pipe {
	struct ckpt_hdr_file common;
	__s32 pipe_objref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_fs {
	struct ckpt_hdr h;
	__u32 umask;
	__u32 _padding;
} CKPT_ALIGNED;

/* memory */
struct ckpt_hdr_mm {
	struct ckpt_hdr h;
	__u32 map_count;
	__s32 exe_objref;
	__u64 def_flags;
	__u64 flags;
	__u64 start_code, end_code, start_data, end_data;
	__u64 start_brk, brk, start_stack;
	__u64 arg_start, arg_end, env_start, env_end;
} CKPT_ALIGNED;

struct ckpt_hdr_vma {
	struct ckpt_hdr h;
	__u32 vma_type;
	__s32 vma_objref;	/* the mapped file */
	__s32 ino_objref;	/* the shared memory inode */
	__u32 _padding;
	__u64 ino_size;
	__u64 vm_start;
	__u64 vm_end;
	__u64 vm_page_prot;
	__u64 vm_flags;
	__u64 vm_pgoff;
	__u16 hugetlb_shift;
	__u16 _padding2[3];
} CKPT_ALIGNED;

/* followed by a BUFFER of nr_pages addresses (u64) and nr_pages page images */
struct ckpt_hdr_pgarr {
	struct ckpt_hdr h;
	__u64 nr_pages;
} CKPT_ALIGNED;

/* signals */
struct ckpt_sigset {
	__u8 sigset[CKPT_ARCH_NSIG / 8];
} CKPT_ALIGNED;

struct ckpt_sigaction {
	__u64 _sa_handler;
	__u64 sa_flags;
	__u64 sa_restorer;
	struct ckpt_sigset sa_mask;
} CKPT_ALIGNED;

struct ckpt_hdr_sighand {
	struct ckpt_hdr h;
	struct ckpt_sigaction action[];
} CKPT_ALIGNED;

struct ckpt_rlimit {
	__u64 rlim_cur;
	__u64 rlim_max;
} CKPT_ALIGNED;

struct ckpt_hdr_signal {
	struct ckpt_hdr h;
	struct ckpt_rlimit rlim[CKPT_RLIM_NLIMITS];
	__u64 it_real_value;
	__u64 it_real_incr;
	__u64 it_virt_value;
	__u64 it_virt_incr;
	__u64 it_prof_value;
	__u64 it_prof_incr;
	__s32 tty_objref;
	__s32 tty_pgrp;
	__s32 tty_old_pgrp;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_siginfo {
	__u32 csi_signo;
	__u32 csi_errno;
	__u32 csi_code;
	__u32 csi_pid;
	__u32 csi_uid;
	__u32 csi_fd;
	__u32 csi_tid;
	__u32 csi_band;
	__u32 csi_overrun;
	__u32 csi_trapno;
	__u32 csi_status;
	__u32 csi_int;
	__u64 csi_ptr;
	__u64 csi_utime;
	__u64 csi_stime;
	__u64 csi_addr;
	__s32 csi_sys_private;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_sigpending {
	struct ckpt_hdr h;
	__u32 nr_pending;
	__u32 _padding;
	struct ckpt_sigset signal;
	struct ckpt_siginfo siginfo[];
} CKPT_ALIGNED;

struct ckpt_hdr_signal_task {
	struct ckpt_hdr h;
	struct ckpt_sigset blocked;
} CKPT_ALIGNED;

/* ---- sockets (v23: net/checkpoint.c, net/unix, net/ipv4 of the linux-cr tree) ---- */

struct ckpt_hdr_file_socket {
	struct ckpt_hdr_file common;
	__s32 sock_objref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_socket {
	struct ckpt_hdr h;
	__u8 has_buffers;
	__u8 _padding0[7];
	struct {			/* struct socket */
		__u64 flags;
		__u8 state;
		__u8 _padding[7];
	} CKPT_ALIGNED socket;
	struct {			/* struct sock_common */
		__u32 bound_dev_if;
		__u32 reuse;
		__u16 family;
		__u8 state;
		__u8 _padding[5];
	} CKPT_ALIGNED sock_common;
	struct {			/* struct sock */
		__s64 rcvlowat;
		__u64 flags;
		__s64 rcvtimeo;
		__s64 sndtimeo;
		__u32 err;
		__u32 err_soft;
		__u32 priority;
		__s32 rcvbuf;
		__s32 sndbuf;
		__u16 type;
		__s16 backlog;
		__u8 protocol;
		__u8 state;
		__u8 shutdown;
		__u8 userlocks;
		__u8 no_check;
		__u8 _padding[3];
		__s32 linger_onoff;	/* struct linger */
		__s32 linger_linger;
	} CKPT_ALIGNED sock;
} CKPT_ALIGNED;

struct ckpt_hdr_socket_queue {
	struct ckpt_hdr h;
	__u32 skb_count;
	__u32 total_bytes;
} CKPT_ALIGNED;

struct ckpt_hdr_socket_buffer {
	struct ckpt_hdr h;
	__u32 transport_header;
	__u32 network_header;
	__u32 mac_header;
	__u32 lin_len;		/* length of linear data */
	__u32 frg_len;		/* length of fragment data */
	__u32 skb_len;
	__u32 hdr_len;
	__u32 mac_len;
	__u32 data_offset;
	__s32 sk_objref;
	__s32 pr_objref;
	__u16 protocol;
	__u16 nr_frags;
	__u8 cb[48];
} CKPT_ALIGNED;

/*
 * SOCKET_BUFFER.cb of a unix socket's message (imgtools' layout: the kernel wrote its raw
 * skb->cb): the sender's credentials as the receiver saw them (SCM_CREDENTIALS), if any.
 */
#define CKPT_UNIX_CB_CREDS	1
struct ckpt_unix_cb {
	__u32 flags;
	__s32 pid;
	__u32 uid;
	__u32 gid;
};

struct ckpt_hdr_socket_buffer_frag {
	struct ckpt_hdr h;
	__u32 size;
	__u32 offset;
} CKPT_ALIGNED;

/*
 * Bits of the SOCKET record's flag words: the numbers of the 2.6.38 kernel the image claims
 * (socket.flags: include/linux/net.h; sock.flags: enum sock_flags of include/net/sock.h).
 */
#define CKPT_SOCKET_PASSCRED	3	/* socket.flags */
#define CKPT_SOCKET_PASSSEC	4
#define CKPT_SOCK_DEAD		0	/* sock.flags */
#define CKPT_SOCK_DONE		1
#define CKPT_SOCK_URGINLINE	2
#define CKPT_SOCK_KEEPOPEN	3
#define CKPT_SOCK_LINGER	4
#define CKPT_SOCK_BROADCAST	6
#define CKPT_SOCK_TIMESTAMP	7
#define CKPT_SOCK_DBG		10
#define CKPT_SOCK_RCVTSTAMP	11
#define CKPT_SOCK_RCVTSTAMPNS	12
#define CKPT_SOCK_LOCALROUTE	13
#define CKPT_SOCK_SNDBUF_LOCK	1	/* sock.userlocks */
#define CKPT_SOCK_RCVBUF_LOCK	2
#define CKPT_SOCK_SHUTDOWN_RCV	1	/* sock.shutdown */
#define CKPT_SOCK_SHUTDOWN_SEND	2
/* socket.state (enum socket_state) and the tcp_states sock_common.state / sock.state use */
#define CKPT_SS_UNCONNECTED	1
#define CKPT_SS_CONNECTED	3
#define CKPT_TCP_ESTABLISHED	1
#define CKPT_TCP_CLOSE		7
#define CKPT_TCP_LISTEN		10

#define CKPT_UNIX_PATH_MAX	108
struct ckpt_sockaddr_un {
	__u16 sun_family;
	char sun_path[CKPT_UNIX_PATH_MAX];
};

#define CKPT_UNIX_LINKED	1
struct ckpt_hdr_socket_unix {
	struct ckpt_hdr h;
	__s32 this;
	__s32 peer;
	__s32 peercred;		/* objref of a CRED */
	__u32 flags;
	__u32 laddr_len;
	__u32 raddr_len;
	struct ckpt_sockaddr_un laddr;
	struct ckpt_sockaddr_un raddr;
	__u32 _padding;
} CKPT_ALIGNED;

/* sock.state of an inet socket (the kernel's tcp_states.h) */
#define CKPT_TCP_ESTABLISHED	1
#define CKPT_TCP_SYN_SENT	2
#define CKPT_TCP_SYN_RECV	3
#define CKPT_TCP_CLOSE		7
#define CKPT_TCP_LISTEN		10
/* socket.state (enum socket_state) */
#define CKPT_SS_UNCONNECTED	1
#define CKPT_SS_CONNECTED	3

struct ckpt_sockaddr_in {
	__u16 sin_family;
	__u16 sin_port;		/* network order */
	__u32 sin_addr;		/* network order */
	__u8 sin_zero[8];
};

struct ckpt_hdr_socket_inet {
	struct ckpt_hdr h;
	__u32 daddr;
	__u32 rcv_saddr;
	__u32 saddr;
	__u16 dport;
	__u16 num;
	__u16 sport;
	__s16 uc_ttl;
	__u16 cmsg_flags;
	__u16 _padding0;
	struct {
		__u64 timeout;
		__u32 ato;
		__u32 lrcvtime;
		__u16 last_seg_size;
		__u16 rcv_mss;
		__u8 pending;
		__u8 quick;
		__u8 pingpong;
		__u8 blocked;
	} CKPT_ALIGNED icsk_ack;
	struct {
		__u32 rcv_nxt, copied_seq, rcv_wup, snd_nxt, snd_una, snd_sml, rcv_tstamp, lsndtime;
		__u32 snd_wl1, snd_wnd, max_window, mss_cache, window_clamp, rcv_ssthresh,
		      frto_highmark;
		__u32 srtt, mdev, mdev_max, rttvar, rtt_seq;
		__u32 packets_out, retrans_out;
		__u32 snd_up, rcv_wnd, write_seq, pushed_seq, lost_out, sacked_out, fackets_out,
		      tso_deferred, bytes_acked;
		__s32 lost_cnt_hint;
		__u32 retransmit_high;
		__u32 lost_retrans_low;
		__u32 prior_ssthresh, high_seq;
		__u32 retrans_stamp, undo_marker;
		__s32 undo_retrans;
		__u32 total_retrans;
		__u32 urg_seq, keepalive_time, keepalive_intvl;
		__u16 urg_data, advmss;
		__u8 frto_counter, nonagle, ecn_flags, reordering, keepalive_probes;
	} CKPT_ALIGNED tcp;
	struct {
		__u8 saddr[16], rcv_saddr[16], daddr[16];
	} CKPT_ALIGNED inet6;
	__u32 laddr_len;
	__u32 raddr_len;
	struct ckpt_sockaddr_in laddr;
	struct ckpt_sockaddr_in raddr;
} CKPT_ALIGNED;

/* ---- epoll, eventfd ---- */

struct ckpt_hdr_eventpoll_items {
	struct ckpt_hdr h;
	__s32 epfile_objref;
	__u32 num_items;
} CKPT_ALIGNED;

/* in the BUFFER that follows EPOLL_ITEMS */
struct ckpt_eventpoll_item {
	__u64 data;
	__u32 fd;
	__s32 file_objref;
	__u32 events;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_file_eventfd {
	struct ckpt_hdr_file common;
	__u64 count;
	__u32 flags;
	__u32 _padding;
} CKPT_ALIGNED;

/* ---- ttys ---- */

struct ckpt_hdr_file_tty {
	struct ckpt_hdr_file common;
	__s32 tty_objref;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_tty {
	struct ckpt_hdr h;
	__u16 driver_type;
	__u16 driver_subtype;
	__s32 link_objref;
	__s32 file_objref;
	__u32 _padding;
	__u32 index;
	__u32 ldisc;
	__u64 flags;
	struct {
		__u32 c_iflag, c_oflag, c_cflag, c_lflag, c_ispeed, c_ospeed;
		__u8 c_line;
		__u8 c_cc[CKPT_TTY_NCCS];
	} CKPT_ALIGNED termios;
	struct {
		__u16 ws_row, ws_col, ws_xpixel, ws_ypixel;
	} CKPT_ALIGNED winsize;
} CKPT_ALIGNED;

struct ckpt_hdr_ldisc_n_tty {
	struct ckpt_hdr h;
	__u32 column;
	__u32 datalen;		/* a BUFFER of datalen bytes follows */
	__u32 canon_column;
	__u32 canon_datalen;
	__u32 canon_data;
	__u16 minimum_to_wake;
	__u8 stopped, hw_stopped, flow_stopped, packet, ctrl_status, lnext, erasing, raw,
	     real_raw, icanon, closing;
	__u8 padding[3];
	__u8 read_flags[CKPT_N_TTY_BUF_SIZE / 8];
} CKPT_ALIGNED;

/* ---- SysV IPC (after IPC_NS: three IPC sections, shm, msg, sem) ---- */

struct ckpt_hdr_ipc_perms {
	struct ckpt_hdr h;	/* zeroed: embedded, not a record */
	__s32 id;
	__u32 key;
	__u32 uid, gid, cuid, cgid;
	__u32 mode;
	__u32 _padding;
	__u64 seq;
	__s32 sec_ref;
	__u32 _padding2;
} CKPT_ALIGNED;

struct ckpt_hdr_ipc_shm {
	struct ckpt_hdr h;
	struct ckpt_hdr_ipc_perms perms;
	__u64 shm_segsz, shm_atim, shm_dtim, shm_ctim;
	__s32 shm_cprid, shm_lprid;
	__u32 mlock_uid;
	__u32 flags;
	__u32 objref;
	__u16 shift;		/* hugetlb */
	__u16 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_ipc_msg {
	struct ckpt_hdr h;
	struct ckpt_hdr_ipc_perms perms;
	__u64 q_stime, q_rtime, q_ctime, q_cbytes, q_qnum, q_qbytes;
	__s32 q_lspid, q_lrpid;
} CKPT_ALIGNED;

struct ckpt_hdr_ipc_msg_msg {
	struct ckpt_hdr h;
	__s64 m_type;
	__u32 m_ts;
	__s32 sec_ref;
} CKPT_ALIGNED;

struct ckpt_hdr_ipc_sem {
	struct ckpt_hdr h;
	struct ckpt_hdr_ipc_perms perms;
	__u64 sem_otime, sem_ctime;
	__u32 sem_nsems;
	__u32 _padding;
} CKPT_ALIGNED;

/*
 * The BUFFER after IPC_SEM: sem_nsems raw kernel `struct sem`, which the linux-cr patches
 * define as {int semval; int sempid} (the same on 32 and 64 bits).
 */
struct ckpt_sem {
	__s32 semval;
	__s32 sempid;
};

/*
 * Message text after IPC_MSG_MSG: BUFFERs totalling m_ts, split as the x86_64 kernel
 * stored it: DATALEN_MSG bytes in the msg_msg page, then DATALEN_SEG per msg_msgseg page.
 */
#define CKPT_MSG_DATALEN_MSG	(4096 - 48)
#define CKPT_MSG_DATALEN_SEG	(4096 - 8)

/* after TASK_SEM_UNDO: a BUFFER of semadj_count s16 adjustments (struct sem_undo.semadj) */
struct ckpt_hdr_task_sem_undo_list {
	struct ckpt_hdr h;
	__u32 count;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_task_sem_undo {
	struct ckpt_hdr h;
	__u32 semid;
	__u32 semadj_count;
} CKPT_ALIGNED;

/*
 * ---- imgtools extension records (docs/format-choices.md, "Extension records") ----
 * Types 8000-8999, which no linux-cr version used. HEADER.uflags has
 * IMGTOOLS_UFLAG_EXT when the image may carry them; `dump --strict` writes none (ERROR
 * records instead) and leaves the flag clear.
 */
#define IMGTOOLS_UFLAG_EXT		(1ULL << 32)
#define CKPT_HDR_EXT_FIRST		8000
#define CKPT_HDR_EXT_LAST		8999
#define CKPT_HDR_EXT_CLOCKS		8001	/* image: after HEADER_ARCH */
#define CKPT_HDR_EXT_RSEQ		8002	/* thread: annotates its task section */
#define CKPT_HDR_EXT_FILE_STAT		8003	/* annotates the FILE_NAME of a GENERIC FILE */
#define CKPT_HDR_EXT_FILE_SIGNALFD	8010	/* object records, after OBJREF(FILE) */
#define CKPT_HDR_EXT_FILE_TIMERFD	8011
#define CKPT_HDR_EXT_FILE_INOTIFY	8012
#define CKPT_HDR_EXT_INOTIFY_WATCH	8013
#define CKPT_HDR_EXT_FILE_MEMFD		8014
#define CKPT_HDR_EXT_FILE_GHOST		8015
#define CKPT_HDR_EXT_EXTENT		8020	/* file contents of MEMFD / GHOST */
#define CKPT_HDR_EXT_INET		8030	/* annotates the SOCKET_INET of every inet socket */
#define CKPT_HDR_EXT_TCP		8031	/* annotates the SOCKET_INET of a TCP socket */
/* reserved: 8030-8039 inet/TCP, 8040-8049 unix sockets, 8050-8059 ttys,
 * 8060-8069 SysV IPC, 8070-8079 epoll/eventfd */

struct ckpt_hdr_ext_clocks {		/* the dumper's clocks when the tree was frozen */
	struct ckpt_hdr h;
	__s64 realtime_ns;
	__s64 monotonic_ns;
	__s64 boottime_ns;
} CKPT_ALIGNED;

struct ckpt_hdr_ext_rseq {		/* a thread's rseq registration */
	struct ckpt_hdr h;
	__u64 rseq;			/* address of its struct rseq */
	__u32 rseq_len;
	__u32 signature;
} CKPT_ALIGNED;

struct ckpt_hdr_ext_file_stat {		/* what restore compares with the file it reopens */
	struct ckpt_hdr h;
	__u64 size;
	__s64 mtime_sec;
	__u32 mtime_nsec;
	__u32 mode;
	__u64 dev;
	__u64 ino;
} CKPT_ALIGNED;

/* the object records start with a FILE record's common part (f_type = CKPT_FILE_IGNORE) */
struct ckpt_hdr_ext_file_signalfd {
	struct ckpt_hdr_file common;
	__u64 sigmask;
} CKPT_ALIGNED;

struct ckpt_hdr_ext_file_timerfd {
	struct ckpt_hdr_file common;
	__s32 clockid;
	__u32 settime_flags;		/* TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET */
	__u64 ticks;			/* expirations not read yet */
	__s64 value_ns;			/* time to the next expiry, 0 = disarmed */
	__s64 interval_ns;
} CKPT_ALIGNED;

struct ckpt_hdr_ext_file_inotify {	/* nr_watches x (INOTIFY_WATCH FILE_NAME) follow */
	struct ckpt_hdr_file common;
	__u32 nr_watches;
	__u32 _padding;
} CKPT_ALIGNED;

struct ckpt_hdr_ext_inotify_watch {
	struct ckpt_hdr h;
	__s32 wd;
	__u32 mask;
	__u64 ino;
	__u64 dev;
} CKPT_ALIGNED;

/* STRING name; at the first use of ino_objref the contents as EXTENT records */
struct ckpt_hdr_ext_file_memfd {
	struct ckpt_hdr_file common;
	__s32 ino_objref;
	__u32 seals;
	__u64 size;
} CKPT_ALIGNED;

/* FILE_NAME (the path it had); at the first use of ino_objref the contents as EXTENTs */
struct ckpt_hdr_ext_file_ghost {
	struct ckpt_hdr_file common;
	__s32 ino_objref;
	__u32 mode;
	__u64 size;
	__u32 uid;
	__u32 gid;
} CKPT_ALIGNED;

/* offset + data bytes; a run of extents ends with one of no data at offset = size */
struct ckpt_hdr_ext_extent {
	struct ckpt_hdr h;
	__u64 offset;
} CKPT_ALIGNED;

/* socket options of an AF_INET/AF_INET6 socket that SOCKET and SOCKET_INET have no field for */
#define IMGTOOLS_INET_V6ONLY		0x1	/* IPV6_V6ONLY */
#define IMGTOOLS_INET_REUSEPORT		0x2	/* SO_REUSEPORT */
#define IMGTOOLS_INET_FREEBIND		0x4	/* IP_FREEBIND */
#define IMGTOOLS_INET_TRANSPARENT	0x8	/* IP_TRANSPARENT */
struct ckpt_hdr_ext_inet {
	struct ckpt_hdr h;
	__u32 flags;			/* IMGTOOLS_INET_* */
	__s32 tos;			/* IP_TOS, or IPV6_TCLASS of an AF_INET6 socket */
} CKPT_ALIGNED;

/*
 * TCP state for TCP_REPAIR that v23's tcp fields do not hold (the sequence numbers, windows
 * and queue lengths are in SOCKET_INET: inq = rcv_nxt - copied_seq, write queue =
 * write_seq - snd_una, of which unsent = write_seq - snd_nxt).
 */
struct ckpt_hdr_ext_tcp {
	struct ckpt_hdr h;
	__u32 options;			/* tcp_info TCPI_OPT_*: 1 timestamps, 2 sack, 4 wscale, 8 ecn */
	__u8 snd_wscale;
	__u8 rcv_wscale;
	__u16 _padding;
	__u32 mss_clamp;		/* TCP_MAXSEG */
	__u32 timestamp;		/* TCP_TIMESTAMP: the connection's timestamp clock */
	__u32 user_timeout;		/* TCP_USER_TIMEOUT, ms */
	__u32 notsent_lowat;		/* TCP_NOTSENT_LOWAT */
	char congestion[16];		/* TCP_CONGESTION, NUL-padded */
} CKPT_ALIGNED;

#define CKPT_ASSERT_SIZE(s, n) _Static_assert(sizeof(struct s) == (n), #s " is not " #n " bytes")
#define CKPT_ASSERT_OFF(s, f, n) \
	_Static_assert(offsetof(struct s, f) == (n), #s "." #f " is not at " #n)

CKPT_ASSERT_SIZE(ckpt_hdr, 8);
CKPT_ASSERT_SIZE(ckpt_const, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_header, 72);
CKPT_ASSERT_OFF(ckpt_hdr_header, rev, 24);
CKPT_ASSERT_OFF(ckpt_hdr_header, constants, 32);
CKPT_ASSERT_OFF(ckpt_hdr_header, time, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_header_arch, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_container, 8);
CKPT_ASSERT_SIZE(ckpt_hdr_tail, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_objref, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_pids, 24);
CKPT_ASSERT_SIZE(ckpt_pids, 8);
CKPT_ASSERT_SIZE(ckpt_hdr_tree, 16);
CKPT_ASSERT_SIZE(ckpt_task_pids, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_task, 80);
CKPT_ASSERT_OFF(ckpt_hdr_task, set_child_tid, 32);
CKPT_ASSERT_OFF(ckpt_hdr_task, sas_ss_size, 56);
CKPT_ASSERT_OFF(ckpt_hdr_task, robust_futex_list, 72);
CKPT_ASSERT_SIZE(ckpt_hdr_task_ns, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_task_objs, 32);
CKPT_ASSERT_SIZE(ckpt_hdr_restart_block, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_thread, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_cpu, 192);
CKPT_ASSERT_OFF(ckpt_hdr_cpu, flags, 152);
CKPT_ASSERT_OFF(ckpt_hdr_cpu, fsindex, 176);
CKPT_ASSERT_OFF(ckpt_hdr_cpu, used_math, 188);
CKPT_ASSERT_SIZE(ckpt_hdr_mm_context, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_ns, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_utsns, 400);
CKPT_ASSERT_OFF(ckpt_hdr_utsns, domainname, 333);
CKPT_ASSERT_SIZE(ckpt_hdr_ipcns, 56);
CKPT_ASSERT_OFF(ckpt_hdr_ipcns, sem_ctl_mni, 52);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc, 16);
CKPT_ASSERT_SIZE(ckpt_capabilities, 40);
CKPT_ASSERT_SIZE(ckpt_hdr_task_creds, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_cred, 96);
CKPT_ASSERT_OFF(ckpt_hdr_cred, user_ref, 40);
CKPT_ASSERT_OFF(ckpt_hdr_cred, cap_s, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_user, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_user_ns, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_groupinfo, 16);
CKPT_ASSERT_OFF(ckpt_hdr_groupinfo, groups, 12);
CKPT_ASSERT_SIZE(ckpt_hdr_file_table, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_file_desc, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_file, 48);
CKPT_ASSERT_SIZE(ckpt_hdr_file_generic, 48);
CKPT_ASSERT_SIZE(ckpt_hdr_file_pipe, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_fs, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_mm, 120);
CKPT_ASSERT_SIZE(ckpt_hdr_vma, 80);
CKPT_ASSERT_OFF(ckpt_hdr_vma, vm_start, 32);
CKPT_ASSERT_OFF(ckpt_hdr_vma, hugetlb_shift, 72);
CKPT_ASSERT_SIZE(ckpt_hdr_pgarr, 16);
CKPT_ASSERT_SIZE(ckpt_sigset, 8);
CKPT_ASSERT_SIZE(ckpt_sigaction, 32);
CKPT_ASSERT_SIZE(ckpt_hdr_sighand, 8);
CKPT_ASSERT_SIZE(ckpt_rlimit, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_signal, 328);
CKPT_ASSERT_OFF(ckpt_hdr_signal, it_real_value, 264);
CKPT_ASSERT_OFF(ckpt_hdr_signal, tty_objref, 312);
CKPT_ASSERT_SIZE(ckpt_siginfo, 88);
CKPT_ASSERT_OFF(ckpt_siginfo, csi_ptr, 48);
CKPT_ASSERT_OFF(ckpt_siginfo, csi_sys_private, 80);
CKPT_ASSERT_SIZE(ckpt_hdr_sigpending, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_signal_task, 16);

CKPT_ASSERT_SIZE(ckpt_hdr_file_socket, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_socket, 120);
CKPT_ASSERT_OFF(ckpt_hdr_socket, sock_common, 32);
CKPT_ASSERT_OFF(ckpt_hdr_socket, sock, 48);
CKPT_ASSERT_SIZE(ckpt_hdr_socket_queue, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_socket_buffer, 104);
CKPT_ASSERT_SIZE(ckpt_unix_cb, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_socket_buffer_frag, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_socket_unix, 256);
CKPT_ASSERT_OFF(ckpt_hdr_socket_unix, laddr, 32);
CKPT_ASSERT_SIZE(ckpt_hdr_socket_inet, 328);
CKPT_ASSERT_SIZE(ckpt_hdr_eventpoll_items, 16);
CKPT_ASSERT_SIZE(ckpt_eventpoll_item, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_file_eventfd, 64);
CKPT_ASSERT_SIZE(ckpt_hdr_file_tty, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_tty, 96);
CKPT_ASSERT_OFF(ckpt_hdr_tty, termios, 40);
CKPT_ASSERT_OFF(ckpt_hdr_tty, winsize, 88);
CKPT_ASSERT_SIZE(ckpt_hdr_ldisc_n_tty, 560);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc_perms, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc_shm, 120);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc_msg, 120);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc_msg_msg, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_ipc_sem, 88);
CKPT_ASSERT_SIZE(ckpt_sem, 8);
CKPT_ASSERT_SIZE(ckpt_hdr_task_sem_undo_list, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_task_sem_undo, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_clocks, 32);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_rseq, 24);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_stat, 48);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_signalfd, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_timerfd, 80);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_inotify, 56);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_inotify_watch, 32);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_memfd, 64);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_file_ghost, 72);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_extent, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_inet, 16);
CKPT_ASSERT_SIZE(ckpt_hdr_ext_tcp, 48);
CKPT_ASSERT_OFF(ckpt_hdr_ext_tcp, congestion, 32);

#endif /* CKPT_HDR_H */
