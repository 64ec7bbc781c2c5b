/*
 * The parts of PMDK's libpmemlog.h and libpmem.h that the benchmark uses.
 * The libraries are loaded with dlopen at run time, so the command builds
 * without the -dev packages; TestPMDKPrototypesMatchHeaders compiles these
 * declarations against the real headers when they are installed.
 */
#ifndef PMWAL_BENCH_PMDK_DECL_H
#define PMWAL_BENCH_PMDK_DECL_H
#include <stddef.h>
#include <sys/types.h>
#include <sys/uio.h>

typedef struct pmemlog PMEMlogpool;
PMEMlogpool *pmemlog_create(const char *path, size_t poolsize, mode_t mode);
PMEMlogpool *pmemlog_open(const char *path);
void pmemlog_close(PMEMlogpool *plp);
int pmemlog_append(PMEMlogpool *plp, const void *buf, size_t count);
int pmemlog_appendv(PMEMlogpool *plp, const struct iovec *iov, int iovcnt);
void pmemlog_rewind(PMEMlogpool *plp);
void pmemlog_walk(PMEMlogpool *plp, size_t chunksize,
	int (*process_chunk)(const void *buf, size_t len, void *arg),
	void *arg);
const char *pmemlog_errormsg(void);

#define PMEM_FILE_CREATE (1 << 0)
void *pmem_map_file(const char *path, size_t len, int flags, mode_t mode,
	size_t *mapped_lenp, int *is_pmemp);
int pmem_unmap(void *addr, size_t len);
void pmem_persist(const void *addr, size_t len);
void pmem_drain(void);
void *pmem_memcpy_persist(void *pmemdest, const void *src, size_t len);
void *pmem_memcpy_nodrain(void *pmemdest, const void *src, size_t len);
const char *pmem_errormsg(void);
#endif
