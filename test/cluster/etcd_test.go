package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/keyauthz/keyauthz/internal/testutil"
)

// etcdBinary is Debian's etcd-server (installed by .ci/run).
const etcdBinary = "/usr/bin/etcd"

// member is one etcd process of a three-member cluster on loopback; it can be stopped and
// started again on the same ports and data folder, as an operator restarts a member.
type member struct {
	name, dataDir string
	client, peer  string // client host:port; peer URL
	cluster       string // the --initial-cluster value every member gets
	log           *testutil.SyncBuffer
	cmd           *exec.Cmd
	exited        chan struct{}
}

// etcdCluster is three members started together.
type etcdCluster struct {
	members []*member
}

// endpoints is the --store value of the keyauthz nodes: every member's client address.
func (c *etcdCluster) endpoints() string {
	eps := make([]string, len(c.members))
	for i, m := range c.members {
		eps[i] = m.client
	}
	return "etcd://" + strings.Join(eps, ",")
}

// requireEtcd skips the test without the binary, except in CI (CI set), where it fails.
func requireEtcd(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(etcdBinary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (CI is set, so this is a failure): install Debian's etcd-server", etcdBinary)
		}
		fmt.Printf("SKIP: %s not found: install Debian's etcd-server (apt-get install etcd-server) to run the cluster test\n", etcdBinary)
		t.Skipf("%s not found: install Debian's etcd-server to run the cluster test", etcdBinary)
	}
}

// freePorts returns n loopback ports that were free a moment ago, all distinct.
func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// startEtcdCluster starts three members (m0, m1, m2) at once with free ports and data folders
// in t.TempDir, and waits until each is healthy (has a leader). A port taken by another
// process between the probe and etcd's bind makes a member exit: the whole cluster is then
// tried again on new ports, up to three times.
func startEtcdCluster(t *testing.T) *etcdCluster {
	t.Helper()
	requireEtcd(t)
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		var c *etcdCluster
		if c, err = tryEtcdCluster(t); err == nil {
			return c
		}
		t.Logf("start etcd cluster (attempt %d): %v", attempt, err)
	}
	t.Fatalf("start etcd cluster: %v", err)
	return nil
}

func tryEtcdCluster(t *testing.T) (*etcdCluster, error) {
	ports, err := freePorts(6)
	if err != nil {
		return nil, err
	}
	root := t.TempDir()
	c := &etcdCluster{}
	var initial []string
	for i := range 3 {
		m := &member{
			name:    fmt.Sprintf("m%d", i),
			dataDir: filepath.Join(root, fmt.Sprintf("m%d", i)),
			client:  fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			peer:    fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			log:     &testutil.SyncBuffer{},
		}
		c.members = append(c.members, m)
		initial = append(initial, m.name+"="+m.peer)
	}
	for _, m := range c.members {
		m.cluster = strings.Join(initial, ",")
		if err := m.launch(); err != nil {
			c.stop()
			return nil, err
		}
	}
	for _, m := range c.members {
		if err := m.waitHealthy(30 * time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, m := range c.members {
				state := "running"
				if m.cmd == nil {
					state = "stopped by the test"
				} else {
					select {
					case <-m.exited:
						state = "EXITED: " + m.cmd.ProcessState.String()
					default:
					}
				}
				t.Logf("etcd %s (%s) log:\n%s", m.name, state, tail(m.log.String(), 4000))
			}
		}
		c.stop()
	})
	return c, nil
}

// tail is the end of s, at most n bytes.
func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// launch starts m's process: the command docs/cluster.md gives for each of the three members.
func (m *member) launch() error {
	client := "http://" + m.client
	m.cmd = exec.Command(etcdBinary,
		"--name", m.name, "--data-dir", m.dataDir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", m.peer, "--initial-advertise-peer-urls", m.peer,
		"--initial-cluster", m.cluster, "--initial-cluster-state", "new",
		"--initial-cluster-token", "keyauthz-test",
		"--logger", "zap", "--log-level", "warn")
	m.cmd.Stdout, m.cmd.Stderr = m.log, m.log
	if err := m.cmd.Start(); err != nil {
		return err
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		_ = cmd.Wait()
		close(exited)
	}(m.cmd, m.exited)
	return nil
}

// waitHealthy waits until m answers a linearizable read, which needs a leader and a quorum.
func (m *member) waitHealthy(limit time.Duration) error {
	cli, err := m.dial()
	if err != nil {
		return err
	}
	defer cli.Close()
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-m.exited:
			return fmt.Errorf("etcd %s exited:\n%s", m.name, m.log)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := cli.Get(ctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("etcd %s not healthy after %v: %v\n%s", m.name, limit, err, m.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial returns a client of m alone (the caller closes it).
func (m *member) dial() (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
}

// running reports whether m's process is up.
func (m *member) running() bool { return m.cmd != nil }

// stop ends m's process (SIGTERM, then SIGKILL) and waits for it.
func (m *member) stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(10 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

// kill ends m's process with SIGKILL, as a crash would: no leadership handed over, nothing
// flushed beyond what etcd had already synced.
func (m *member) kill() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Kill()
	<-m.exited
	m.cmd = nil
}

func (c *etcdCluster) stop() {
	for _, m := range c.members {
		m.stop()
	}
}

// leader returns the member that is the raft leader now, as the running members report it.
func (c *etcdCluster) leader() (*member, error) {
	var errs []error
	for _, m := range c.members {
		if !m.running() {
			continue
		}
		cli, err := m.dial()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := cli.Status(ctx, m.client)
		cancel()
		cli.Close()
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m.name, err))
			continue
		}
		if st.Leader != 0 && st.Leader == st.Header.MemberId {
			return m, nil
		}
	}
	return nil, fmt.Errorf("no member says it leads: %w", errors.Join(errs...))
}
