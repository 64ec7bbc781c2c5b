//go:build !cgo || nopmdk

package main

import "errors"

// pmdkBuild says how this binary reaches PMDK.
const pmdkBuild = "not built in"

// loadPMDK reports why PMDK is unavailable in this build.
func loadPMDK() error {
	return errors.New("this binary was built without cgo (CGO_ENABLED=0 or -tags nopmdk), so it cannot load libpmemlog")
}

type pmemlogDriver struct{}

func (pmemlogDriver) create(string) (store, error) { return nil, loadPMDK() }
func (pmemlogDriver) open(string) (store, error)   { return nil, loadPMDK() }

type floorDriver struct{}

func (floorDriver) create(string) (store, error) { return nil, loadPMDK() }
func (floorDriver) open(string) (store, error)   { return nil, loadPMDK() }
