package simdr_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/simdr-go/simdr"
)

func Example() {
	dir, err := os.MkdirTemp("", "simdr-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	s, err := simdr.Open(filepath.Join(dir, "data.bin"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.Put([]byte("greeting"), []byte("hello, world")); err != nil {
		log.Fatal(err)
	}
	var b simdr.Batch
	b.Put([]byte("a"), []byte("one"))
	b.Put([]byte("b"), []byte("two"))
	b.Delete([]byte("greeting"))
	if err := s.Apply(&b); err != nil {
		log.Fatal(err)
	}

	e, err := s.Get([]byte("a"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("a = %s (offset %d)\n", e.Bytes(), e.Offset())
	_, err = s.Get([]byte("greeting"))
	fmt.Println(err)
	fmt.Println("live keys:", s.Len())
	// Output:
	// a = one (offset 64)
	// simdr: key not found
	// live keys: 2
}

func ExampleView() {
	dir, _ := os.MkdirTemp("", "simdr-example")
	defer os.RemoveAll(dir)
	s, err := simdr.Open(filepath.Join(dir, "vec.bin"), nil)
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	raw := []byte{0, 0, 128, 63, 0, 0, 0, 64} // 1.0 and 2.0 as little-endian float32
	if err := s.Put([]byte("vec"), raw); err != nil {
		log.Fatal(err)
	}
	e, _ := s.Get([]byte("vec"))
	floats, err := simdr.View[float32](e)
	fmt.Println(floats, err)
	// Output: [1 2] <nil>
}

func ExampleStore_PutTTL() {
	dir, err := os.MkdirTemp("", "simdr-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// A clock the example moves by hand (nil means time.Now).
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	s, err := simdr.Open(filepath.Join(dir, "data.bin"), &simdr.Options{Clock: func() time.Time { return now }})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	if err := s.PutTTL([]byte("session"), []byte("token-42"), 30*time.Minute); err != nil {
		log.Fatal(err)
	}
	left, _ := s.TTL([]byte("session"))
	e, _ := s.Get([]byte("session"))
	fmt.Printf("%s, %v left\n", e.Bytes(), left)

	now = now.Add(30 * time.Minute)
	_, err = s.Get([]byte("session"))
	fmt.Println(err, "- live keys:", s.Len())
	// Output:
	// token-42, 30m0s left
	// simdr: key not found - live keys: 0
}
