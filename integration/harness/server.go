package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Server is a registry server a test starts (etcd, ZooKeeper): a process
// whose output goes to <dir>/<name>.log, stopped when the test ends, that
// the test can signal (SIGSTOP hangs it), stop and start again with the
// same command line and data.
type Server struct {
	t    testing.TB
	argv []string
	log  *os.File

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartServer runs argv, logging to <dir>/<name>.log; what, such as
// "etcd (Debian's etcd-server)", names it in errors.
func StartServer(t testing.TB, dir, name, what string, argv ...string) *Server {
	t.Helper()
	log, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, argv: argv, log: log}
	t.Cleanup(func() {
		s.kill()
		log.Close()
	})
	if err := s.start(); err != nil {
		t.Fatalf("starting %s: %v", what, err)
	}
	return s
}

func (s *Server) start() error {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	return nil
}

// Signal sends the server's process sig, such as SIGSTOP or SIGCONT.
func (s *Server) Signal(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatalf("signalling %s: %v", s.argv[0], err)
	}
}

// Stop ends the process with sig (SIGTERM: a clean shutdown; SIGKILL: a
// crash) and waits for it, killing it after 10 s.
func (s *Server) Stop(sig syscall.Signal) {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.t.Logf("%s did not exit within 10 s of %v; killing it", s.argv[0], sig)
		_ = cmd.Process.Kill()
		<-done
	}
}

// Restart starts the process again, with the same command line, once Stop
// has ended it.
func (s *Server) Restart() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("starting %s again: %v", s.argv[0], err)
	}
}

func (s *Server) kill() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Kill()
	<-done
}
