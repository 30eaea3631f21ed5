package kvrocks

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kvc.dev/kvc"
)

// errHostNotFound stands for the host's own not-found error (the controller's
// consts.ErrNotFound).
var errHostNotFound = errors.New("not found")

// The test binary runs as a cluster member when KVC_GO_MEMBER names one (the cluster test
// starts three such processes): it opens a Store and answers commands on stdin, one a line,
// with "reply ..." lines on stdout; its LeaderChange events are "event true|false" lines.
func TestMain(m *testing.M) {
	if name := os.Getenv("KVC_GO_MEMBER"); name != "" {
		os.Exit(runMember(name))
	}
	os.Exit(m.Run())
}

func runMember(name string) int {
	s, err := Open(kvc.Options{Name: name, DataDir: os.Getenv("KVC_GO_DATA"),
		ListenPeer: os.Getenv("KVC_GO_PEER"), ListenClient: os.Getenv("KVC_GO_CLIENT"),
		InitialCluster: os.Getenv("KVC_GO_CLUSTER"), Tick: 10 * time.Millisecond,
		ElectionTimeout: 300 * time.Millisecond, HeartbeatInterval: 30 * time.Millisecond},
		Config{NotFound: errHostNotFound})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var mu sync.Mutex
	say := func(format string, args ...interface{}) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	go func() {
		for leads := range s.LeaderChange() {
			say("event %v", leads)
		}
	}()
	say("reply open %s", s.ID())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		switch f[0] {
		case "leader": // IsReady waits up to 1 s for a leader
			rctx, rcancel := context.WithTimeout(ctx, time.Second)
			say("reply leader %s ready=%v", s.Leader(), s.IsReady(rctx))
			rcancel()
		case "set":
			if err := s.Set(ctx, f[1], []byte(f[2])); err != nil {
				say("reply error %v", err)
			} else {
				say("reply ok")
			}
		case "get":
			v, err := s.Get(ctx, f[1])
			switch {
			case errors.Is(err, errHostNotFound) && errors.Is(err, kvc.ErrNotFound):
				say("reply notfound")
			case err != nil:
				say("reply error %v", err)
			default:
				say("reply value %s", v)
			}
		case "list":
			entries, err := s.List(ctx, f[1])
			var ks []string
			for _, e := range entries {
				ks = append(ks, e.Key+"="+string(e.Value))
			}
			say("reply list %s %v", strings.Join(ks, ","), err)
		}
		cancel()
	}
	if err := s.Close(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

type member struct {
	name, client string
	cmd          *exec.Cmd
	stdin        io.WriteCloser
	replies      chan string
	events       chan bool
	log          string
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func startMember(t *testing.T, name, peer, client, cluster string) *member {
	t.Helper()
	dir := t.TempDir()
	m := &member{name: name, client: client, replies: make(chan string, 16),
		events: make(chan bool, 16), log: filepath.Join(dir, "stderr")}
	m.cmd = exec.Command(os.Args[0], "-test.run=^$")
	m.cmd.Env = append(os.Environ(), "KVC_GO_MEMBER="+name, "KVC_GO_DATA="+filepath.Join(dir, "data"),
		"KVC_GO_PEER="+peer, "KVC_GO_CLIENT="+client, "KVC_GO_CLUSTER="+cluster)
	stderr, err := os.Create(m.log)
	if err != nil {
		t.Fatal(err)
	}
	m.cmd.Stderr = stderr
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stderr.Close()
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event "):
				m.events <- line == "event true"
			case strings.HasPrefix(line, "reply "):
				m.replies <- strings.TrimPrefix(line, "reply ")
			}
		}
		close(m.replies)
	}()
	t.Cleanup(func() {
		if m.cmd.ProcessState == nil {
			m.cmd.Process.Kill()
			m.cmd.Wait()
		}
		if t.Failed() {
			if b, err := os.ReadFile(m.log); err == nil && len(b) > 0 {
				t.Logf("%s's stderr:\n%s", name, b)
			}
		}
	})
	if got := m.reply(t, ""); got != "open "+name {
		t.Fatalf("%s: %q", name, got)
	}
	return m
}

// reply sends a command (none when empty) and returns the reply (10 s at most).
func (m *member) reply(t *testing.T, command string) string {
	t.Helper()
	if command != "" {
		if _, err := fmt.Fprintln(m.stdin, command); err != nil {
			t.Fatalf("%s: %s: %v", m.name, command, err)
		}
	}
	select {
	case r, ok := <-m.replies:
		if !ok {
			t.Fatalf("%s exited (%s)", m.name, command)
		}
		return r
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no reply to %q", m.name, command)
	}
	return ""
}

// until polls cond every 20 ms until it holds, failing after 20 s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// agreedLeader polls until every member names the same leader, ready; returns it.
func agreedLeader(t *testing.T, ms []*member) *member {
	t.Helper()
	var leader *member
	until(t, "a leader all members agree on", func() bool {
		name := ""
		for i, m := range ms {
			r := m.reply(t, "leader")
			if !strings.HasSuffix(r, " ready=true") {
				return false
			}
			n := strings.TrimSuffix(strings.TrimPrefix(r, "leader "), " ready=true")
			if n == "" || (i > 0 && n != name) {
				return false
			}
			name = n
		}
		for _, m := range ms {
			if m.name == name {
				leader = m
			}
		}
		return leader != nil
	})
	return leader
}

// nextEvent returns m's next LeaderChange event (20 s at most).
func nextEvent(t *testing.T, m *member) bool {
	t.Helper()
	select {
	case leads := <-m.events:
		return leads
	case <-time.After(20 * time.Second):
		t.Fatalf("%s: no LeaderChange event", m.name)
	}
	return false
}

// Three members in three processes: election and LeaderChange, a write on one read on the
// others, List's first level, the host's not-found error, a remote Client; the leader's
// process killed: another takes over (LeaderChange true there) and the cluster still serves;
// then the last follower's killed: the new leader steps down (LeaderChange false).
func TestClusterOfThreeProcesses(t *testing.T) {
	names := []string{"c1", "c2", "c3"}
	peers := make([]string, 3)
	clients := make([]string, 3)
	var cluster []string
	for i, n := range names {
		peers[i], clients[i] = freeAddr(t), freeAddr(t)
		cluster = append(cluster, n+"="+peers[i])
	}
	var ms []*member
	for i, n := range names {
		ms = append(ms, startMember(t, n, peers[i], clients[i], strings.Join(cluster, ",")))
	}
	leader := agreedLeader(t, ms)
	if !nextEvent(t, leader) {
		t.Fatalf("%s leads, but its first LeaderChange event is false", leader.name)
	}
	var followers []*member
	for _, m := range ms {
		if m != leader {
			followers = append(followers, m)
			select {
			case leads := <-m.events:
				t.Fatalf("follower %s got LeaderChange %v", m.name, leads)
			default:
			}
		}
	}
	// A write on a follower, read on the other follower and on the leader (linearizable).
	for _, kv := range []string{"/t/ns a", "/t/ns/a 1", "/t/ns/b 2", "/t/ns/a/deep 3", "/t/nsx 4"} {
		if r := followers[0].reply(t, "set "+kv); r != "ok" {
			t.Fatalf("set %s: %s", kv, r)
		}
	}
	for _, m := range []*member{followers[1], leader} {
		if r := m.reply(t, "get /t/ns/a"); r != "value 1" {
			t.Fatalf("%s: get: %s", m.name, r)
		}
		if r := m.reply(t, "list /t/ns"); r != "list a=1,b=2 <nil>" {
			t.Fatalf("%s: %s", m.name, r)
		}
		if r := m.reply(t, "get /t/none"); r != "notfound" {
			t.Fatalf("%s: missing key: %s", m.name, r)
		}
	}
	// A client of the cluster over the network.
	c, err := kvc.Dial(strings.Join(clients, ","), kvc.ClientOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if kv, err := c.Get(ctx, "/t/ns/b"); err != nil || string(kv.Value) != "2" {
		t.Fatalf("client: %+v %v", kv, err)
	}

	// Kill the leader's process; one of the others takes over.
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	leader.cmd.Wait()
	var next *member
	select {
	case leads := <-followers[0].events:
		next = followers[0]
		if !leads {
			t.Fatalf("%s: LeaderChange false", next.name)
		}
	case leads := <-followers[1].events:
		next = followers[1]
		if !leads {
			t.Fatalf("%s: LeaderChange false", next.name)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no member took over")
	}
	if got := agreedLeader(t, followers); got != next {
		t.Fatalf("%s got LeaderChange true, but the leader is %s", next.name, got.name)
	}
	other := followers[0]
	if other == next {
		other = followers[1]
	}
	if r := next.reply(t, "set /t/ns/c 5"); r != "ok" {
		t.Fatalf("set on the new leader: %s", r)
	}
	if r := other.reply(t, "list /t/ns"); r != "list a=1,b=2,c=5 <nil>" {
		t.Fatalf("%s: %s", other.name, r)
	}
	until(t, "the client to read through a live member", func() bool {
		kv, err := c.Get(ctx, "/t/ns/c")
		return err == nil && string(kv.Value) == "5"
	})
	// The other follower's process killed too: the new leader has lost its quorum and steps
	// down (CheckQuorum), so its LeaderChange says false.
	if err := other.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	other.cmd.Wait()
	if nextEvent(t, next) {
		t.Fatalf("%s: LeaderChange true again, want false", next.name)
	}
	if r := next.reply(t, "leader"); !strings.HasPrefix(r, "leader  ready=") {
		t.Fatalf("%s after losing its quorum: %s", next.name, r)
	}
	// The last member closes cleanly (stdin's end) without a quorum.
	next.stdin.Close()
	done := make(chan error, 1)
	go func() { done <- next.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", next.name, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not exit", next.name)
	}
}
